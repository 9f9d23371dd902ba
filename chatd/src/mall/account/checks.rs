//! The checks of what a member types into a form: an e-mail address and a display name, each
//! with the sentence to show when it is wrong.

use chmail::store::{
    mall::{check_nonempty, MAX_PERSON_NAME_LEN},
    MAX_ADDRESS_LEN,
};

/// The address typed into a form, checked and lowercased.
///
/// # Errors
/// The sentence to show for a missing or malformed address.
pub fn check_address(typed: &str) -> Result<String, &'static str> {
    let address = typed.trim();
    if address.is_empty() {
        return Err("Please enter your e-mail address.");
    }
    if address.len() > MAX_ADDRESS_LEN {
        return Err("That e-mail address is too long.");
    }
    let malformed = "That does not look like an e-mail address (name@example.com).";
    let (local, domain) = address.rsplit_once('@').ok_or(malformed)?;
    let local_ok = !local.is_empty()
        && local.len() <= 64
        && !local.starts_with('.')
        && !local.ends_with('.')
        && !local.contains("..")
        && local
            .chars()
            .all(|c| !c.is_whitespace() && !c.is_control() && !"<>()[],;:\\\"@".contains(c));
    let domain_ok = domain.contains('.')
        && domain.len() <= 253
        && domain.split('.').all(|label| {
            !label.is_empty()
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_alphanumeric() || c == '-')
        });
    if !local_ok || !domain_ok {
        return Err(malformed);
    }
    Ok(address.to_lowercase())
}

/// A display name typed into a form, trimmed.
///
/// # Errors
/// The sentence to show for a missing, too long or unprintable name.
pub fn check_name(typed: &str) -> Result<String, String> {
    let name = typed.trim();
    if name.chars().any(char::is_control) {
        return Err("Your name cannot contain line breaks or control characters.".into());
    }
    if check_nonempty("name", name, MAX_PERSON_NAME_LEN).is_err() {
        return Err(if name.is_empty() {
            "Please enter your name.".into()
        } else {
            format!("Your name is too long: at most {MAX_PERSON_NAME_LEN} bytes.")
        });
    }
    Ok(name.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_checked_and_lowercased() {
        assert_eq!(
            check_address(" Ana.Lima@Example.COM "),
            Ok("ana.lima@example.com".into())
        );
        for bad in [
            "",
            "ana",
            "ana@",
            "@example.com",
            "ana@example",
            "a b@example.com",
            "ana@exa mple.com",
            "<ana@example.com>",
            "ana@-example.com",
            "ana@example..com",
        ] {
            assert!(check_address(bad).is_err(), "{bad:?}");
        }
        assert!(check_address(&format!("{}@example.com", "a".repeat(320))).is_err());
    }

    #[test]
    fn names_are_trimmed_and_bounded() {
        assert_eq!(check_name("  Ana Lima "), Ok("Ana Lima".into()));
        assert!(check_name("   ").is_err());
        assert!(check_name("Ana\nBcc: x").is_err());
        assert!(check_name(&"a".repeat(MAX_PERSON_NAME_LEN + 1)).is_err());
    }
}
