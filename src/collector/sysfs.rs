//! Go-compatible readers for sysfs attributes and Go number syntax,
//! shared by the hardware and network collectors (hwmon, thermal_zone,
//! cpufreq, powersupplyclass, rapl, dmi, edac, nvme, netclass, watchdog) so
//! their values parse exactly as node_exporter's do.
//!
//! Must never: read more than one bounded buffer per attribute (a broken
//! driver must not hang a collection), or accept a number Go would reject.

use std::io::{self, Read};
use std::path::Path;

/// procfs' SysReadFile and hwmon's sysReadFile read one buffer of 128
/// bytes with a single read(2): longer attributes are cut there.
pub const ATTR_MAX: usize = 128;

/// One read(2) of at most 128 bytes, as upstream's sysReadFile (no
/// retry on EAGAIN, which is what keeps a broken driver from hanging).
pub fn read_attr<'b>(path: &Path, buf: &'b mut [u8; ATTR_MAX]) -> io::Result<&'b [u8]> {
    let mut f = std::fs::File::open(path)?;
    let n = f.read(buf)?;
    Ok(&buf[..n])
}

/// procfs' SysReadFile: one 128-byte read, TrimSpace, invalid UTF-8
/// replaced as Go's strings.ToValidUTF8 does. Writes into `out`.
pub fn read_attr_string(path: &Path, out: &mut String) -> io::Result<()> {
    let mut buf = [0u8; ATTR_MAX];
    let raw = read_attr(path, &mut buf)?;
    out.clear();
    push_valid_utf8(out, raw);
    let end = out.trim_end().len();
    out.truncate(end);
    let lead = out.len() - out.trim_start().len();
    out.drain(..lead);
    Ok(())
}

/// Whole-file read (Go's os.ReadFile), invalid UTF-8 replaced.
pub fn read_full_lossy_bytes(path: &Path, out: &mut String) -> io::Result<()> {
    let bytes = std::fs::read(path)?;
    out.clear();
    push_valid_utf8(out, &bytes);
    Ok(())
}

/// Appends `bytes`, replacing each run of invalid UTF-8 with one U+FFFD
/// (Go's strings.ToValidUTF8(s, "\uFFFD")).
pub fn push_valid_utf8(out: &mut String, mut bytes: &[u8]) {
    let mut in_bad_run = false;
    loop {
        match std::str::from_utf8(bytes) {
            Ok(s) => {
                out.push_str(s);
                return;
            }
            Err(e) => {
                let (good, rest) = bytes.split_at(e.valid_up_to());
                if !good.is_empty() {
                    in_bad_run = false;
                    // Just validated.
                    out.push_str(std::str::from_utf8(good).unwrap_or_default());
                }
                if !in_bad_run {
                    out.push('\u{FFFD}');
                    in_bad_run = true;
                }
                let bad = e.error_len().unwrap_or(rest.len());
                bytes = &rest[bad..];
                if bytes.is_empty() {
                    return;
                }
            }
        }
    }
}

/// Go's strconv.ParseFloat(s, 64): decimal and hex (`0x1p-2`) forms,
/// `_` between digits, `inf`/`infinity` with a sign, `nan` without one;
/// out of range is an error, not ±Inf.
pub fn parse_float(s: &str) -> Option<f64> {
    let (neg, body) = match s.as_bytes().first() {
        Some(b'+') => (false, &s[1..]),
        Some(b'-') => (true, &s[1..]),
        _ => (false, s),
    };
    let sign = if neg { -1.0 } else { 1.0 };
    if body.eq_ignore_ascii_case("inf") || body.eq_ignore_ascii_case("infinity") {
        return Some(sign * f64::INFINITY);
    }
    if s.eq_ignore_ascii_case("nan") {
        return Some(f64::NAN);
    }
    if !body
        .bytes()
        .all(|c| c.is_ascii_alphanumeric() || b"._+-".contains(&c))
    {
        return None;
    }
    let mut tmp = [0u8; 64];
    let body = if body.contains('_') {
        if !underscore_ok(s) || body.len() > tmp.len() {
            return None;
        }
        let mut n = 0;
        for c in body.bytes().filter(|&c| c != b'_') {
            tmp[n] = c;
            n += 1;
        }
        std::str::from_utf8(&tmp[..n]).ok()?
    } else {
        body
    };
    let v = if body.len() > 2 && body[..2].eq_ignore_ascii_case("0x") {
        parse_hex_float(&body[2..])?
    } else {
        if body.starts_with(['+', '-']) {
            return None;
        }
        let lower = body.as_bytes().first().map(u8::to_ascii_lowercase);
        if matches!(lower, Some(b'i' | b'n')) {
            return None;
        }
        body.parse::<f64>().ok()?
    };
    if v.is_infinite() {
        return None;
    }
    Some(sign * v)
}

/// `<hex mantissa>[.<hex>]p<exp>`, after the `0x`.
fn parse_hex_float(s: &str) -> Option<f64> {
    let (mant, exp) = s.split_once(['p', 'P'])?;
    let exp: i32 = if exp.is_empty() || exp == "+" || exp == "-" {
        return None;
    } else {
        exp.parse().ok()?
    };
    let (int, frac) = mant.split_once('.').unwrap_or((mant, ""));
    if int.is_empty() && frac.is_empty() {
        return None;
    }
    let mut v = 0f64;
    for c in int.chars().chain(frac.chars()) {
        v = v * 16.0 + f64::from(c.to_digit(16)?);
    }
    let shift = exp.checked_sub(4 * i32::try_from(frac.len()).ok()?)?;
    Some(v * 2f64.powi(shift))
}

/// Go's strconv.underscoreOK: `_` only between digits (or after a base
/// prefix).
fn underscore_ok(s: &str) -> bool {
    let mut b = s.as_bytes();
    if let [b'+' | b'-', rest @ ..] = b {
        b = rest;
    }
    let mut saw = b'^';
    let mut i = 0;
    let mut hex = false;
    if b.len() >= 2 && b[0] == b'0' && matches!(b[1].to_ascii_lowercase(), b'b' | b'o' | b'x') {
        i = 2;
        saw = b'0';
        hex = b[1].eq_ignore_ascii_case(&b'x');
    }
    while i < b.len() {
        let c = b[i];
        let l = c.to_ascii_lowercase();
        if c.is_ascii_digit() || (hex && (b'a'..=b'f').contains(&l)) {
            saw = b'0';
        } else if c == b'_' {
            if saw != b'0' {
                return false;
            }
            saw = b'_';
        } else {
            if saw == b'_' {
                return false;
            }
            saw = b'!';
        }
        i += 1;
    }
    saw != b'_'
}

/// Go's strconv.ParseInt(s, 0, 64): `0x`, `0o`, `0b` and leading-`0`
/// octal prefixes, `_` between digits.
pub fn parse_int_base0(s: &str) -> Option<i64> {
    let (neg, body) = match s.as_bytes().first() {
        Some(b'+') => (false, &s[1..]),
        Some(b'-') => (true, &s[1..]),
        _ => (false, s),
    };
    if body.is_empty() {
        return None;
    }
    let lb = body.as_bytes();
    let (radix, digits) = if lb.len() >= 2 && lb[0] == b'0' {
        match lb[1].to_ascii_lowercase() {
            b'x' => (16, &body[2..]),
            b'o' => (8, &body[2..]),
            b'b' => (2, &body[2..]),
            _ => (8, &body[1..]),
        }
    } else {
        (10, body)
    };
    if body.contains('_') && !underscore_ok(s) {
        return None;
    }
    let mut mag: u64 = 0;
    let mut any = false;
    for c in digits.chars() {
        if c == '_' {
            continue;
        }
        let d = c.to_digit(radix)?;
        mag = mag
            .checked_mul(u64::from(radix))?
            .checked_add(u64::from(d))?;
        any = true;
    }
    if !any && radix != 8 {
        return None;
    }
    if neg {
        if mag > 1u64 << 63 {
            return None;
        }
        Some((mag as i64).wrapping_neg())
    } else {
        i64::try_from(mag).ok()
    }
}

/// Go's strconv.ParseUint(s, 0, 32): as `parse_int_base0`, but a sign is
/// an error and so is anything above `u32::MAX`.
pub fn parse_uint32_base0(s: &str) -> Option<u32> {
    if s.starts_with(['+', '-']) {
        return None;
    }
    u32::try_from(parse_int_base0(s)?).ok()
}

/// Which read errors upstream treats as "this attribute is absent".
pub fn errno(e: &io::Error) -> i32 {
    e.raw_os_error().unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_uint32_base0_matches_go() {
        assert_eq!(parse_uint32_base0("17"), Some(17));
        assert_eq!(parse_uint32_base0("0x1f"), Some(31));
        assert_eq!(parse_uint32_base0("017"), Some(15));
        assert_eq!(parse_uint32_base0("0"), Some(0));
        assert_eq!(parse_uint32_base0("4294967295"), Some(u32::MAX));
        assert_eq!(parse_uint32_base0("4294967296"), None);
        assert_eq!(parse_uint32_base0("-1"), None);
        assert_eq!(parse_uint32_base0("+1"), None);
        assert_eq!(parse_uint32_base0(" 1"), None);
        assert_eq!(parse_uint32_base0("0x"), None);
        assert_eq!(parse_float("2596.140"), Some(2596.14));
        assert_eq!(parse_float("1e999"), None);
    }

    #[test]
    fn parse_float_matches_go() {
        let ok = [
            ("42", 42.0),
            ("-1500", -1500.0),
            ("1e3", 1000.0),
            ("1_000", 1000.0),
            ("+Inf", f64::INFINITY),
            ("-infinity", f64::NEG_INFINITY),
            (".5", 0.5),
            ("1.", 1.0),
            ("0x1p-2", 0.25),
            ("0X1.8P1", 3.0),
        ];
        for (s, want) in ok {
            assert_eq!(parse_float(s), Some(want), "{s}");
        }
        assert!(parse_float("nan").unwrap().is_nan());
        for bad in [
            "", "N/A", "1200 ", " 1", "0x10", "+nan", "1e400", "1__0", "_1", "1_", "1,5",
        ] {
            assert_eq!(parse_float(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn parse_int_base0_matches_go() {
        let cases = [
            ("010", Some(8)),
            ("0x10", Some(16)),
            ("-100", Some(-100)),
            ("0", Some(0)),
            ("0b11", Some(3)),
            ("0o17", Some(15)),
            ("1_000", Some(1000)),
            ("09", None),
            ("", None),
            ("eighty", None),
            ("-9223372036854775808", Some(i64::MIN)),
            ("9223372036854775808", None),
        ];
        for (s, want) in cases {
            assert_eq!(parse_int_base0(s), want, "{s}");
        }
    }

    #[test]
    fn invalid_utf8_runs_become_one_replacement() {
        let mut s = String::new();
        push_valid_utf8(&mut s, b"Bad \xff\xfe UTF8 \xc3");
        assert_eq!(s, "Bad \u{FFFD} UTF8 \u{FFFD}");
    }
}
