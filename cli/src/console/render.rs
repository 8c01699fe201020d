//! How the console shows what it did not write: record keys, values and headers are
//! untrusted bytes. They become [`Shown`] text — pretty JSON, plain text or a hex dump — and
//! the templates escape every piece of text they interpolate, so a value like
//! `<script>...</script>` is shown, never run. Also times and sizes.

/// Most bytes of one key, value or header shown on a page (the rest is summarised).
pub const MAX_SHOWN_BYTES: usize = 64 * 1024;

/// A key, value or header value, ready to show (escaped by the template).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Shown {
    /// A JSON object or array, pretty-printed.
    Json(String),
    /// UTF-8 text that is not such JSON.
    Text(String),
    /// Anything else, as a hex dump (offset, hex bytes, printable ASCII).
    Hex(String),
}

impl Shown {
    /// What kind it is, for the page's label and style.
    pub fn kind(&self) -> &'static str {
        match self {
            Shown::Json(_) => "json",
            Shown::Text(_) => "text",
            Shown::Hex(_) => "hex",
        }
    }

    pub fn text(&self) -> &str {
        match self {
            Shown::Json(s) | Shown::Text(s) | Shown::Hex(s) => s,
        }
    }
}

/// Detects what `bytes` are: JSON (an object or an array: a bare `42` or `"x"` reads better as
/// text), else UTF-8 text, else binary. Only the first [`MAX_SHOWN_BYTES`] are shown.
pub fn detect(bytes: &[u8]) -> Shown {
    let shown = &bytes[..bytes.len().min(MAX_SHOWN_BYTES)];
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
    if shown.len() == bytes.len()
        && matches!(first, Some(b'{' | b'['))
        && let Ok(v) = serde_json::from_slice::<serde_json::Value>(bytes)
        && let Ok(pretty) = serde_json::to_string_pretty(&v)
    {
        return Shown::Json(pretty);
    }
    // A cut may split a UTF-8 sequence: accept an incomplete one at the very end.
    match std::str::from_utf8(shown) {
        Ok(s) => Shown::Text(s.to_string()),
        Err(e) if e.error_len().is_none() && shown.len() < bytes.len() => {
            let valid = &shown[..e.valid_up_to()];
            Shown::Text(String::from_utf8_lossy(valid).into_owned())
        }
        Err(_) => Shown::Hex(hex_dump(shown)),
    }
}

/// `00000000  48 65 6c 6c 6f 00 ..  |Hello.|`, 16 bytes a line.
pub fn hex_dump(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 4 + 16);
    for (i, line) in bytes.chunks(16).enumerate() {
        if i > 0 {
            out.push('\n');
        }
        out.push_str(&format!("{:08x} ", i * 16));
        for j in 0..16 {
            match line.get(j) {
                Some(b) => out.push_str(&format!(" {b:02x}")),
                None => out.push_str("   "),
            }
        }
        out.push_str("  |");
        out.extend(line.iter().map(|&b| {
            if b.is_ascii_graphic() || b == b' ' {
                b as char
            } else {
                '.'
            }
        }));
        out.push('|');
    }
    out
}

/// `1.5 MB` style (powers of 1000, as `ls --si`).
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1000.0 && unit < UNITS.len() - 1 {
        v /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

/// `1.2k`, `3.4M`: counts and rates in a narrow column.
pub fn human_count(n: f64) -> String {
    match n {
        n if n >= 1e9 => format!("{:.1}G", n / 1e9),
        n if n >= 1e6 => format!("{:.1}M", n / 1e6),
        n if n >= 1e4 => format!("{:.1}k", n / 1e3),
        n if n >= 100.0 => format!("{n:.0}"),
        n => format!("{n:.1}"),
    }
}

/// Unix ms as `2026-12-05 18:56:43.123` (UTC).
pub fn utc(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let milli = ms.rem_euclid(1000);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}.{milli:03}",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// Unix ms from `YYYY-MM-DDTHH:MM[:SS]` (what an `<input type="datetime-local">` sends; read
/// as UTC) or from a number of unix ms.
pub fn parse_time(s: &str) -> Option<i64> {
    let s = s.trim();
    if let Ok(ms) = s.parse::<i64>() {
        return Some(ms);
    }
    let (date, time) = s.split_once(['T', ' '])?;
    let mut d = date.splitn(3, '-').map(str::parse::<i64>);
    let (y, m, day) = (d.next()?.ok()?, d.next()?.ok()?, d.next()?.ok()?);
    let mut t = time.split(':');
    let hh = t.next()?.parse::<i64>().ok()?;
    let mm = t.next()?.parse::<i64>().ok()?;
    let ss = match t.next() {
        Some(ss) => ss.parse::<f64>().ok()?,
        None => 0.0,
    };
    if !(1..=12).contains(&m) || !(1..=31).contains(&day) || hh > 23 || mm > 59 || ss >= 61.0 {
        return None;
    }
    let days = days_from_civil(y, m, day);
    Some((days * 86_400 + hh * 3600 + mm * 60) * 1000 + (ss * 1000.0) as i64)
}

// Howard Hinnant's algorithms (proleptic Gregorian calendar).
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_objects_and_arrays_are_pretty_printed() {
        assert_eq!(
            detect(br#"{"a":1,"b":[true,null]}"#),
            Shown::Json("{\n  \"a\": 1,\n  \"b\": [\n    true,\n    null\n  ]\n}".into())
        );
        assert_eq!(detect(b" [1]").kind(), "json");
        // Scalars and broken JSON are text.
        assert_eq!(detect(b"42"), Shown::Text("42".into()));
        assert_eq!(detect(b"{not json"), Shown::Text("{not json".into()));
        assert_eq!(detect(b""), Shown::Text(String::new()));
    }

    #[test]
    fn text_stays_text_even_when_it_looks_like_html() {
        let s = "<script>alert(1)</script>";
        assert_eq!(detect(s.as_bytes()), Shown::Text(s.into()));
        assert_eq!(detect("héllo".as_bytes()).kind(), "text");
        // The template escapes it: what maud makes of it.
        let page = maud::html! { pre { (detect(s.as_bytes()).text()) } }.into_string();
        assert_eq!(page, "<pre>&lt;script&gt;alert(1)&lt;/script&gt;</pre>");
        let attr = maud::html! { a title=(s) {} }.into_string();
        assert!(!attr.contains("<script"), "{attr}");
    }

    #[test]
    fn binary_is_a_hex_dump() {
        let shown = detect(&[0xff, 0x00, b'A', 0x80]);
        assert_eq!(
            shown,
            Shown::Hex("00000000  ff 00 41 80                                      |..A.|".into())
        );
        let two_lines = hex_dump(&[b'a'; 17]);
        assert_eq!(two_lines.lines().count(), 2);
        assert!(two_lines.ends_with("00000010  61") || two_lines.contains("\n00000010  61"));
    }

    #[test]
    fn big_values_are_cut_at_a_character_boundary() {
        let mut v = vec![b'a'; MAX_SHOWN_BYTES - 1];
        v.extend_from_slice("é".as_bytes()); // straddles the cut
        let Shown::Text(t) = detect(&v) else {
            panic!("text expected")
        };
        assert_eq!(t.len(), MAX_SHOWN_BYTES - 1);
        // A big JSON document is shown as (cut) text, not parsed whole.
        let big = format!("[{}1]", "1,".repeat(MAX_SHOWN_BYTES));
        assert_eq!(detect(big.as_bytes()).kind(), "text");
    }

    #[test]
    fn times_both_ways() {
        assert_eq!(utc(0), "1970-01-01 00:00:00.000");
        assert_eq!(utc(1_764_960_000_123), "2025-12-05 18:40:00.123");
        assert_eq!(utc(-1), "1969-12-31 23:59:59.999");
        assert_eq!(parse_time("2025-12-05T18:40"), Some(1_764_960_000_000));
        assert_eq!(
            parse_time("2025-12-05 18:40:00.123"),
            Some(1_764_960_000_123)
        );
        assert_eq!(parse_time("2000-02-29T00:00:00"), Some(951_782_400_000));
        assert_eq!(parse_time("1764960000123"), Some(1_764_960_000_123));
        assert_eq!(parse_time("2025-13-01T00:00"), None);
        assert_eq!(parse_time("yesterday"), None);
    }

    #[test]
    fn sizes_and_counts() {
        assert_eq!(human_bytes(999), "999 B");
        assert_eq!(human_bytes(12_345), "12.3 kB");
        assert_eq!(human_count(2_500_000.0), "2.5M");
        assert_eq!(human_count(12_345.0), "12.3k");
        assert_eq!(human_count(0.5), "0.5");
    }
}
