use std::fmt;
use zeroize::Zeroizing;

/// A plaintext secret value: zeroized when dropped, redacted in `Debug` and `Display`.
///
/// ```
/// use ductape::Plaintext;
/// let v = Plaintext::from("sk_live_123");
/// assert_eq!(v.expose(), "sk_live_123");
/// assert_eq!(format!("{v:?}"), "Plaintext([redacted])");
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct Plaintext(Zeroizing<String>);

impl Plaintext {
    pub fn new(value: String) -> Self {
        Plaintext(Zeroizing::new(value))
    }

    /// The value itself. The name makes every read of a secret visible in review.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<&str> for Plaintext {
    fn from(s: &str) -> Self {
        Plaintext::new(s.to_owned())
    }
}

impl From<String> for Plaintext {
    fn from(s: String) -> Self {
        Plaintext::new(s)
    }
}

impl fmt::Debug for Plaintext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Plaintext([redacted])")
    }
}

impl fmt::Display for Plaintext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}
