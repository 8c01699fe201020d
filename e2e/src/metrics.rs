//! Scraping a broker's `/metrics` and parsing the OpenMetrics text strictly: a line the
//! parser does not understand fails the test.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// One sample: `name{labels} value`.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// A parsed scrape.
#[derive(Debug)]
pub struct Scrape {
    pub samples: Vec<Sample>,
    /// `# TYPE` lines: metric family → type.
    pub types: BTreeMap<String, String>,
}

impl Scrape {
    /// Samples named `name` whose labels include every pair of `with`.
    pub fn matching<'a>(
        &'a self,
        name: &'a str,
        with: &'a [(&'a str, &'a str)],
    ) -> impl Iterator<Item = &'a Sample> + 'a {
        self.samples.iter().filter(move |s| {
            s.name == name
                && with
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).is_some_and(|x| x == v))
        })
    }

    /// The sum of [`Scrape::matching`] samples; `None` when there is none.
    pub fn sum(&self, name: &str, with: &[(&str, &str)]) -> Option<f64> {
        let mut found = false;
        let total = self
            .matching(name, with)
            .inspect(|_| found = true)
            .map(|s| s.value)
            .sum();
        found.then_some(total)
    }
}

/// Sends `GET path` to `addr` and returns (status code, content type, body).
pub fn http_get(addr: &str, path: &str) -> (u16, String, String) {
    let mut s = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").expect("an HTTP response");
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("a status code");
    let content_type = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-type")
                .then(|| v.trim().to_string())
        })
        .unwrap_or_default();
    (status, content_type, body.to_string())
}

/// Scrapes `http://addr/metrics` and parses it.
pub fn scrape(addr: &str) -> Scrape {
    let (status, content_type, body) = http_get(addr, "/metrics");
    assert_eq!(status, 200, "{body}");
    assert!(
        content_type.starts_with("application/openmetrics-text"),
        "{content_type}"
    );
    parse(&body)
}

/// Parses OpenMetrics text; panics on anything malformed.
pub fn parse(text: &str) -> Scrape {
    let mut samples = Vec::new();
    let mut types = BTreeMap::new();
    let lines = text.lines();
    let mut eof = false;
    for line in lines {
        assert!(!eof, "text after # EOF: {line}");
        if line == "# EOF" {
            eof = true;
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("# TYPE name kind");
            types.insert(name.to_string(), kind.to_string());
            continue;
        }
        if line.starts_with("# HELP ") || line.starts_with("# UNIT ") {
            continue;
        }
        samples.push(parse_sample(line));
    }
    assert!(eof, "no # EOF at the end");
    Scrape { samples, types }
}

fn parse_sample(line: &str) -> Sample {
    let bad = || -> ! { panic!("malformed sample line: {line:?}") };
    let name_end = line.find(['{', ' ']).unwrap_or_else(|| bad());
    let name = &line[..name_end];
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
    {
        bad();
    }
    let mut labels = BTreeMap::new();
    let mut rest = &line[name_end..];
    if let Some(inner) = rest.strip_prefix('{') {
        let mut chars = inner.char_indices();
        let mut key = String::new();
        loop {
            let Some((_, c)) = chars.next() else { bad() };
            match c {
                '}' if key.is_empty() => break,
                '=' => {
                    let Some((_, '"')) = chars.next() else { bad() };
                    let mut value = String::new();
                    loop {
                        match chars.next() {
                            Some((_, '"')) => break,
                            Some((_, '\\')) => match chars.next() {
                                Some((_, 'n')) => value.push('\n'),
                                Some((_, c @ ('"' | '\\'))) => value.push(c),
                                _ => bad(),
                            },
                            Some((_, c)) => value.push(c),
                            None => bad(),
                        }
                    }
                    labels.insert(std::mem::take(&mut key), value);
                    match chars.next() {
                        Some((_, ',')) => {}
                        Some((i, '}')) => {
                            rest = &inner[i + 1..];
                            break;
                        }
                        _ => bad(),
                    }
                }
                c if c.is_ascii_alphanumeric() || c == '_' => key.push(c),
                _ => bad(),
            }
        }
    }
    let value = rest.strip_prefix(' ').unwrap_or_else(|| bad());
    // A timestamp may follow the value; the broker writes none.
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse::<f64>().unwrap_or_else(|_| bad()),
    };
    Sample {
        name: name.to_string(),
        labels,
        value,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openmetrics_text_is_parsed_and_garbage_is_not() {
        let s = parse(
            "# HELP x_total Things.\n# TYPE x counter\nx_total{a=\"1\",b=\"q\\\"\\\\\"} 3\nup 1.5\n# EOF\n",
        );
        assert_eq!(s.types["x"], "counter");
        assert_eq!(s.samples[0].labels["b"], "q\"\\");
        assert_eq!(s.sum("x_total", &[("a", "1")]), Some(3.0));
        assert_eq!(s.sum("up", &[]), Some(1.5));
        assert_eq!(s.sum("nope", &[]), None);
        for bad in [
            "x{a=1} 2\n# EOF\n",
            "x 2\n",
            "x{a=\"1\" 2\n# EOF\n",
            "x abc\n# EOF\n",
        ] {
            assert!(std::panic::catch_unwind(|| parse(bad)).is_err(), "{bad}");
        }
    }
}
