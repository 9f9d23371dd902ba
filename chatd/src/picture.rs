//! Pictures people upload (to a chat, to a shop's ad): what they are, judged by their bytes and
//! never by a name or a claimed type, and how large they would be once decoded.
//!
//! Only the header is read, never the whole image: PNG's `IHDR`, GIF's logical screen, JPEG's
//! first start-of-frame, WebP's `VP8 `/`VP8L`/`VP8X` chunk. A picture whose size cannot be read,
//! or that would decode to more than [`MAX_PIXELS`], is refused: a few kilobytes of a compressed
//! 60000x60000 picture must not become gigabytes in a browser or in anything that later resizes
//! it.

/// Most pixels (width x height) a picture may have: 40 megapixels, above any phone camera's
/// photo (a 7000x5000 picture is 35 MP), far below what would exhaust a browser tab.
pub const MAX_PIXELS: u64 = 40_000_000;

/// The content type of a picture judged by its first bytes (PNG, JPEG, GIF or WebP); `None` for
/// anything else.
pub fn kind(bytes: &[u8]) -> Option<&'static str> {
    if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some("image/png")
    } else if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Some("image/jpeg")
    } else if bytes.starts_with(b"GIF87a") || bytes.starts_with(b"GIF89a") {
        Some("image/gif")
    } else if bytes.len() >= 12 && bytes.starts_with(b"RIFF") && &bytes[8..12] == b"WEBP" {
        Some("image/webp")
    } else {
        None
    }
}

/// Why a picture is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Not a PNG, JPEG, GIF or WebP picture (or its header is cut or broken).
    NotAPicture,
    /// It would decode to more than [`MAX_PIXELS`].
    TooManyPixels,
}

/// The content type of `bytes` when they are a picture of at most [`MAX_PIXELS`].
///
/// # Errors
/// [`Refused`] says why not.
pub fn check(bytes: &[u8]) -> Result<&'static str, Refused> {
    let kind = kind(bytes).ok_or(Refused::NotAPicture)?;
    let (w, h) = dimensions(kind, bytes).ok_or(Refused::NotAPicture)?;
    if w == 0 || h == 0 {
        return Err(Refused::NotAPicture);
    }
    if u64::from(w) * u64::from(h) > MAX_PIXELS {
        return Err(Refused::TooManyPixels);
    }
    Ok(kind)
}

fn be16(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from(u16::from_be_bytes([
        *b.get(at)?,
        *b.get(at + 1)?,
    ])))
}

fn le16(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from(u16::from_le_bytes([
        *b.get(at)?,
        *b.get(at + 1)?,
    ])))
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn le24(b: &[u8], at: usize) -> Option<u32> {
    Some(
        u32::from(*b.get(at)?) | u32::from(*b.get(at + 1)?) << 8 | u32::from(*b.get(at + 2)?) << 16,
    )
}

/// Width and height from the header of a picture of `kind`.
fn dimensions(kind: &str, b: &[u8]) -> Option<(u32, u32)> {
    match kind {
        // The signature, then the IHDR chunk: length, "IHDR", width, height.
        "image/png" => (b.get(12..16)? == b"IHDR").then(|| Some((be32(b, 16)?, be32(b, 20)?)))?,
        "image/gif" => Some((le16(b, 6)?, le16(b, 8)?)),
        "image/webp" => webp(b),
        "image/jpeg" => jpeg(b),
        _ => None,
    }
}

fn webp(b: &[u8]) -> Option<(u32, u32)> {
    match b.get(12..16)? {
        // Lossy: a frame tag of 3 bytes, the start code, then 14-bit width and height.
        b"VP8 " => Some((le16(b, 26)? & 0x3FFF, le16(b, 28)? & 0x3FFF)),
        // Lossless: a signature byte, then 14-bit width-1 and height-1 packed in 4 bytes.
        b"VP8L" => {
            let bits = u32::from_le_bytes(b.get(21..25)?.try_into().ok()?);
            Some(((bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1))
        }
        // Extended: 24-bit canvas width-1 and height-1.
        b"VP8X" => Some((le24(b, 24)? + 1, le24(b, 27)? + 1)),
        _ => None,
    }
}

/// Walks the JPEG markers to the first start-of-frame (SOF0-SOF15 but DHT, JPG and DAC).
fn jpeg(b: &[u8]) -> Option<(u32, u32)> {
    let mut at = 2;
    loop {
        while *b.get(at)? != 0xFF {
            at += 1;
        }
        while *b.get(at)? == 0xFF {
            at += 1;
        }
        let marker = *b.get(at)?;
        at += 1;
        if matches!(marker, 0xD8 | 0x01 | 0xD0..=0xD7) {
            continue; // markers without a length
        }
        let len = usize::try_from(be16(b, at)?).ok()?;
        if matches!(marker, 0xC0..=0xCF) && !matches!(marker, 0xC4 | 0xC8 | 0xCC) {
            return Some((be16(b, at + 5)?, be16(b, at + 3)?));
        }
        if len < 2 {
            return None;
        }
        at += len;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png(w: u32, h: u32) -> Vec<u8> {
        let mut b = b"\x89PNG\r\n\x1a\n\0\0\0\x0dIHDR".to_vec();
        b.extend(w.to_be_bytes());
        b.extend(h.to_be_bytes());
        b.extend([8, 6, 0, 0, 0]);
        b
    }

    #[test]
    fn pictures_are_judged_by_their_bytes_and_their_size() {
        assert_eq!(check(&png(640, 480)), Ok("image/png"));
        assert_eq!(check(&png(60_000, 60_000)), Err(Refused::TooManyPixels));
        assert_eq!(check(&png(0, 10)), Err(Refused::NotAPicture));
        assert_eq!(check(b"\x89PNG\r\n\x1a\n"), Err(Refused::NotAPicture));
        assert_eq!(check(b"<svg onload=alert(1)>"), Err(Refused::NotAPicture));
        assert_eq!(check(b"GIF89a\x20\x03\x58\x02\0\0"), Ok("image/gif"));
        // JPEG: SOI, an APP0 segment, then SOF0 with height 600 and width 800.
        let jpeg = [
            0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x04, 0x4A, 0x46, 0xFF, 0xC0, 0x00, 0x11, 0x08, 0x02,
            0x58, 0x03, 0x20, 0x03,
        ];
        assert_eq!(check(&jpeg), Ok("image/jpeg"));
        assert_eq!(check(&jpeg[..12]), Err(Refused::NotAPicture));
        // WebP, lossless: 100x50 is width-1 = 99 and height-1 = 49 packed from bit 0 and 14.
        let mut webp = b"RIFF\0\0\0\0WEBPVP8L\0\0\0\0\x2f".to_vec();
        webp.extend((99u32 | (49 << 14)).to_le_bytes());
        assert_eq!(dimensions("image/webp", &webp), Some((100, 50)));
        assert_eq!(check(&webp), Ok("image/webp"));
    }
}
