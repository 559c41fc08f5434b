// The code samples of docs/reference/managing-secrets.md, as written. Only the access key
// (and the server address, through DUCTAPE_URL) come from the environment. Each sample is
// in its own block because several declare the same names. Lines marked "setup" are not
// part of the reference: they create what a sample deletes or revokes.
import Ductape from '@ductape/sdk';

const ductape = new Ductape({
  accessKey: process.env.DUCTAPE_ACCESS_KEY,
});

await ductape.init();

// Create a Secret
{
  const secret = await ductape.secrets.create({
    key: 'STRIPE_API_KEY',
    value: 'sk_live_51ABC123...',
    description: 'Production Stripe API key for payment processing',
    token_type: 'api',
    scope: ['stripe_payments', 'checkout_service'],
    envs: ['prd', 'staging'],
    expires_at: Math.floor(Date.now() / 1000) + (365 * 24 * 60 * 60) // 1 year from now
  });

  console.log('Secret created:', secret.key);
}

// List All Secrets
{
  const secrets = await ductape.secrets.fetchAll();

  secrets.forEach(secret => {
    console.log(`${secret.key}: ${secret.description || 'No description'}`);
    console.log(`  Type: ${secret.token_type || 'Not specified'}`);
    console.log(`  Scope: ${secret.scope?.join(', ') || 'All apps'}`);
    console.log(`  Environments: ${secret.envs?.join(', ') || 'All environments'}`);
  });
}

// Fetch a Single Secret
{
  const secret = await ductape.secrets.fetch('STRIPE_API_KEY');

  console.log('Key:', secret.key);
  console.log('Value:', secret.value); // Decrypted value
  console.log('Description:', secret.description);
}

// Update a Secret
{
  // Update the value and extend expiration
  const updated = await ductape.secrets.update('STRIPE_API_KEY', {
    value: 'sk_live_51NEW_KEY...',
    description: 'Rotated Stripe API key - January 2025',
    expires_at: Math.floor(Date.now() / 1000) + (180 * 24 * 60 * 60) // 180 days
  });

  console.log('Secret updated:', updated.key);
  console.log('New expiration:', new Date(updated.expires_at * 1000));
}

// Update Metadata Only
{
  // Update scope and environments without changing the value
  const updated = await ductape.secrets.update('STRIPE_API_KEY', {
    scope: ['stripe_payments', 'subscription_service', 'invoice_service'],
    envs: ['dev', 'staging', 'prd']
  });
  console.log('Metadata updated:', updated.scope.length, updated.envs.length);
}

// Delete a Secret
{
  await ductape.secrets.create({ key: 'OLD_API_KEY', value: 'old' }); // setup
  const deleted = await ductape.secrets.delete('OLD_API_KEY');

  if (deleted) {
    console.log('Secret successfully deleted');
  }
}

// Revoke a Secret
{
  await ductape.secrets.create({ key: 'COMPROMISED_KEY', value: 'leaked' }); // setup
  const revoked = await ductape.secrets.revoke('COMPROMISED_KEY');

  if (revoked) {
    console.log('Secret has been revoked');
  }
}

// Token Rotation
{
  // Set 90-day expiration for compliance
  const secret = await ductape.secrets.create({
    key: 'PCI_COMPLIANT_KEY',
    value: 'sensitive_value',
    expires_at: Math.floor(Date.now() / 1000) + (90 * 24 * 60 * 60)
  });
  console.log('Rotation set:', secret.key);
}

// Scope Restriction
{
  // Restrict Stripe key to payment-related apps only
  const secret = await ductape.secrets.create({
    key: 'STRIPE_SECRET',
    value: 'sk_live_xxx',
    scope: ['payment_processor', 'subscription_handler'],
    envs: ['prd'] // Production only
  });
  console.log('Scoped:', secret.key);
}

// Environment Separation
{
  // Development
  await ductape.secrets.create({
    key: 'STRIPE_KEY_DEV',
    value: 'sk_test_xxx',
    envs: ['dev']
  });

  // Production
  await ductape.secrets.create({
    key: 'STRIPE_KEY_PROD',
    value: 'sk_live_xxx',
    envs: ['prd']
  });
}

// Error Handling
for (let attempt = 0; attempt < 2; attempt++) { // setup: the second create conflicts
  try {
    const secret = await ductape.secrets.create({
      key: 'MY_SECRET',
      value: 'secret_value'
    });
  } catch (error) {
    if (error.response?.status === 409) {
      console.error('Secret with this key already exists');
    } else if (error.response?.status === 403) {
      console.error('You do not have permission to create secrets');
    } else {
      console.error('Failed to create secret:', error.message);
    }
  }
}
