//! Names of instances, network interfaces and TAP devices (R3, R4).

/// Instance and interface names are DNS labels: they appear as `<name>.internal`.
pub const NAME_MAX: usize = 63;

/// Linux interface names hold at most 15 characters (IFNAMSIZ - 1).
pub const TAP_NAME_MAX: usize = 15;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("must not be empty")]
    Empty,
    #[error("is longer than {max} characters")]
    TooLong { max: usize },
    #[error(
        "may only hold lowercase letters, digits and '-', and must start and end with a \
         letter or digit"
    )]
    BadCharacters,
    #[error("must not have the form of a uuid, which would make it ambiguous")]
    LooksLikeUuid,
    #[error("may only hold letters, digits, '-', '_' and '.', and must not be '.' or '..'")]
    BadTapCharacters,
}

/// Checks an instance or interface name: a DNS label of lowercase letters, digits and '-'
/// (DNS names are case-insensitive, so names are lowercase to stay unique), that is not a
/// uuid (objects are found by uuid or name).
pub fn check_name(name: &str) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    if name.len() > NAME_MAX {
        return Err(NameError::TooLong { max: NAME_MAX });
    }
    let bytes = name.as_bytes();
    let allowed = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let inner_ok = bytes.iter().all(|b| allowed(b) || *b == b'-');
    let ends_ok = allowed(&bytes[0]) && allowed(&bytes[bytes.len() - 1]);
    if !inner_ok || !ends_ok {
        return Err(NameError::BadCharacters);
    }
    if looks_like_uuid(name) {
        return Err(NameError::LooksLikeUuid);
    }
    Ok(())
}

/// Whether a string has the 8-4-4-4-12 hex shape of a uuid.
pub fn looks_like_uuid(s: &str) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, len)| g.len() == len && g.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Checks a TAP device name. Linux allows almost any byte; weft allows the characters that
/// are safe in every tool and path a device name ends up in.
pub fn check_tap_name(name: &str) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    if name.len() > TAP_NAME_MAX {
        return Err(NameError::TooLong { max: TAP_NAME_MAX });
    }
    let chars_ok = name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if !chars_ok || name == "." || name == ".." {
        return Err(NameError::BadTapCharacters);
    }
    Ok(())
}

/// The name an interface gets when none is given (R4): `<instance>-eth<index>`, or `None`
/// when that would be too long, in which case the caller picks `eth-<suffix>`.
pub fn generated_interface_name(instance: &str, index: usize) -> Option<String> {
    let name = format!("{instance}-eth{index}");
    (name.len() <= NAME_MAX).then_some(name)
}

/// A fallback interface name `eth-<suffix>` with a random suffix; the caller retries until
/// it is free in the account.
pub fn fallback_interface_name() -> String {
    format!("eth-{}", random_suffix(8))
}

/// A random lowercase alphanumeric suffix.
pub fn random_suffix(len: usize) -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::thread_rng();
    (0..len)
        .map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(check_name("web-1").is_ok());
        assert!(check_name(&"a".repeat(63)).is_ok());
        assert_eq!(
            check_name(&"a".repeat(64)),
            Err(NameError::TooLong { max: 63 })
        );
        assert_eq!(check_name(""), Err(NameError::Empty));
        for bad in [
            "-a", "a-", "a b", "a/b", "a;rm", "ä", "a.b", "a_b", "Web", "DEMO",
        ] {
            assert_eq!(check_name(bad), Err(NameError::BadCharacters), "{bad}");
        }
        let uuid = "31126461-4c19-48b5-aba0-d94026a1bf0c";
        assert_eq!(check_name(uuid), Err(NameError::LooksLikeUuid));
        assert!(check_name("31126461-4c19-48b5-aba0-d94026a1bf0").is_ok());
    }

    #[test]
    fn tap_names() {
        assert!(check_tap_name("custtap0").is_ok());
        assert!(check_tap_name("tap_0.1-x").is_ok());
        assert_eq!(
            check_tap_name("abcdefghijklmnop"),
            Err(NameError::TooLong { max: 15 })
        );
        for bad in ["..", ".", "a/b", "a b", "a:b", "$(x)", "tap\n"] {
            assert_eq!(
                check_tap_name(bad),
                Err(NameError::BadTapCharacters),
                "{bad}"
            );
        }
    }

    #[test]
    fn generated_names_fall_back_when_too_long() {
        assert_eq!(
            generated_interface_name("web", 0).as_deref(),
            Some("web-eth0")
        );
        assert_eq!(
            generated_interface_name(&"a".repeat(58), 3).unwrap().len(),
            63
        );
        assert_eq!(generated_interface_name(&"a".repeat(59), 3), None);
        let fallback = fallback_interface_name();
        assert!(fallback.starts_with("eth-") && check_name(&fallback).is_ok());
    }
}
