//! The canonical form that `b=` signs, and the From address it covers.

use super::field::check_values;
use super::from::from_address;
use super::{ChmailHeader, HeaderError};

/// The first line of the canonical form; it names the format and version, so a v=1 signature can
/// never be replayed as anything else.
const CANON_PREFIX: &str = "CHmail-v1\n";

/// The bytes that `b=` signs for `header` and the mail's From address `from`.
///
/// `"CHmail-v1\n"`, then one `tag=value\n` line per tag in the order d, s, l, h, p, r, t, f, where
/// d, h and the From address f are ASCII-lowercased, p and t are plain decimal, and f is the bare
/// addr-spec found by [`from_address`]. `v` is implied by the first line; `b` is not covered.
///
/// # Errors
///
/// [`HeaderError::BadFrom`] if `from` holds no single usable address, or the error of a value that
/// breaks its rule (so no value can smuggle in a line break).
pub fn canonical_bytes(header: &ChmailHeader, from: &str) -> Result<Vec<u8>, HeaderError> {
    check_values(
        &header.domain,
        &header.selector,
        &header.login,
        &header.host,
        header.port,
    )?;
    let f = from_address(from)
        .ok_or_else(|| HeaderError::BadFrom(from.chars().take(80).collect()))?
        .to_ascii_lowercase();
    let text = format!(
        "{CANON_PREFIX}d={}\ns={}\nl={}\nh={}\np={}\nr={}\nt={}\nf={}\n",
        header.domain.to_ascii_lowercase(),
        header.selector,
        header.login,
        header.host.to_ascii_lowercase(),
        header.port,
        header.room,
        header.time,
        f,
    );
    Ok(text.into_bytes())
}
