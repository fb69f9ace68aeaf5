//! `Accept-Encoding` as RFC 9110 §12.5.3 reads it: comma-separated codings,
//! case-insensitive, each with an optional weight; `q=0` means "not
//! acceptable"; `*` stands for every coding not named.
//!
//! Owns: the one decision "may this response be gzip'd". Must never:
//! allocate (it runs on every scrape) or fail: a malformed element is
//! skipped, as if the client had not sent it.

/// The weight of one `q=` parameter in thousandths, or None when it is not
/// a valid qvalue (`0`, `0.ddd`, `1`, `1.000`; at most three decimals).
fn qvalue(v: &str) -> Option<u16> {
    let v = v.trim();
    let (int, frac) = match v.split_once('.') {
        Some((i, f)) => (i, f),
        None => (v, ""),
    };
    if frac.len() > 3 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut thousandths: u16 = 0;
    for (i, b) in frac.bytes().enumerate() {
        thousandths += u16::from(b - b'0') * [100, 10, 1][i];
    }
    match int {
        "0" => Some(thousandths),
        "1" if thousandths == 0 => Some(1000),
        _ => None,
    }
}

/// Whether the client accepts gzip, from every `Accept-Encoding` value it
/// sent. An explicit `gzip` (or `x-gzip`) element decides; otherwise `*`
/// does; otherwise gzip is not acceptable. Without the header, a server
/// may pick any coding, but identity is the only one every client reads.
pub fn accepts_gzip<'a>(values: impl IntoIterator<Item = &'a str>) -> bool {
    let mut gzip: Option<u16> = None;
    let mut star: Option<u16> = None;
    for value in values {
        for element in value.split(',') {
            let mut parts = element.split(';');
            let coding = parts.next().unwrap_or("").trim();
            if coding.is_empty() {
                continue;
            }
            let mut q = Some(1000);
            for p in parts {
                let Some((k, v)) = p.split_once('=') else {
                    continue;
                };
                if k.trim().eq_ignore_ascii_case("q") {
                    q = qvalue(v);
                }
            }
            // A malformed weight makes the element unreadable: ignore it.
            let Some(q) = q else { continue };
            let slot =
                if coding.eq_ignore_ascii_case("gzip") || coding.eq_ignore_ascii_case("x-gzip") {
                    &mut gzip
                } else if coding == "*" {
                    &mut star
                } else {
                    continue;
                };
            // Repeated elements: the highest weight wins.
            *slot = Some(slot.map_or(q, |old| old.max(q)));
        }
    }
    match (gzip, star) {
        (Some(q), _) => q > 0,
        (None, Some(q)) => q > 0,
        (None, None) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::accepts_gzip;

    fn ok(h: &str) -> bool {
        accepts_gzip([h])
    }

    #[test]
    fn plain_and_case_insensitive() {
        assert!(ok("gzip"));
        assert!(ok("GZIP"));
        assert!(ok("deflate, GZip"));
        assert!(ok("x-gzip"));
        assert!(!ok("deflate, br"));
        assert!(!ok(""));
        assert!(!accepts_gzip([]));
    }

    #[test]
    fn q_zero_refuses_in_every_spelling() {
        for h in [
            "gzip;q=0",
            "GZIP;q=0",
            "gzip; q=0",
            "gzip ; Q=0.0",
            "gzip;q=0.00",
            "gzip;q=0.000",
            "*;q=0",
            "identity, gzip;q=0, *",
        ] {
            assert!(!ok(h), "{h}");
        }
    }

    #[test]
    fn weights_and_star() {
        assert!(ok("gzip;q=0.001"));
        assert!(ok("gzip;q=1"));
        assert!(ok("gzip;q=1.000"));
        assert!(ok("*"));
        assert!(ok("br;q=1, *;q=0.5"));
        assert!(!ok("*;q=0, br"));
        // gzip named explicitly beats the wildcard either way.
        assert!(ok("*;q=0, gzip;q=0.5"));
        assert!(!ok("*, gzip;q=0"));
    }

    #[test]
    fn malformed_elements_are_ignored() {
        // Not qvalues: more than three decimals, above 1, words.
        assert!(!ok("gzip;q=0.0001"));
        assert!(!ok("gzip;q=2"));
        assert!(!ok("gzip;q=high"));
        assert!(!ok("gzip;q=1.5"));
        // Other parameters do not matter.
        assert!(ok("gzip;level=9"));
        assert!(ok(",,gzip,,"));
    }

    #[test]
    fn several_header_lines() {
        assert!(accepts_gzip(["br", "gzip"]));
        assert!(!accepts_gzip(["gzip;q=0", "br"]));
        assert!(accepts_gzip(["gzip;q=0", "gzip;q=0.5"]));
    }
}
