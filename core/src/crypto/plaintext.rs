use std::fmt;
use std::sync::Arc;

use zeroize::Zeroizing;

/// A plaintext secret value: zeroized when dropped (its last copy), redacted in `Debug` and
/// `Display`. Copies share the one buffer: a value a client keeps (its cache, the last value
/// a data key opened) is handed out without copying the text, allocating or zeroizing.
///
/// ```
/// use ductape::Plaintext;
/// let v = Plaintext::from("sk_live_123");
/// assert_eq!(v.expose(), "sk_live_123");
/// assert_eq!(format!("{v:?}"), "Plaintext([redacted])");
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct Plaintext(Arc<Zeroizing<String>>);

impl Plaintext {
    pub fn new(value: String) -> Self {
        Plaintext(Arc::new(Zeroizing::new(value)))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_share_one_buffer_and_stay_redacted() {
        let a = Plaintext::from("sk_live_canary");
        let b = a.clone();
        assert_eq!(a, b);
        assert!(std::ptr::eq(a.expose().as_ptr(), b.expose().as_ptr()));
        drop(a);
        assert_eq!(b.expose(), "sk_live_canary");
        assert_eq!(format!("{b:?} {b}"), "Plaintext([redacted]) [redacted]");
        assert_ne!(b, Plaintext::from("other"));
    }
}
