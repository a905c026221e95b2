//! A strict parser for the Prometheus text exposition format (0.0.4) and OpenMetrics 1.0 text,
//! used by the `scrape` probe.
//!
//! Why it exists: a `scrape` probe that only checks for a 2xx would report success for a target
//! that Prometheus fails to scrape (`up == 0` with "expected value after metric" in the target
//! page). So the probe parses the body and fails where Prometheus would fail the scrape, with a
//! short message that points at the line and column. The rules follow Prometheus's own parsers
//! (`model/textparse` for what a scrape accepts, `expfmt` for the family checks that
//! `promtool check metrics` adds); where the two differ the choice is noted on the item.
//! `tests/exposition_prometheus.rs` serves every body the tests accept or refuse to a real
//! Prometheus and checks that its `up` agrees with [`parse`].
//!
//! It only validates and counts: no values are kept, nothing is allocated per line (family names
//! borrow from the body), and it never panics on any input, since bodies come from the network
//! and may be large.

use std::collections::hash_map::Entry;
use std::collections::HashMap;

/// The exposition format of a body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// The Prometheus text format, version 0.0.4 (plus Prometheus 3's quoted UTF-8 names).
    PrometheusText,
    /// OpenMetrics 1.0 text.
    OpenMetrics,
}

impl Format {
    /// Picks the format from a response Content-Type header value (as Prometheus does:
    /// `application/openmetrics-text` → OpenMetrics, anything else incl. missing → PrometheusText).
    #[must_use]
    pub fn from_content_type(ct: Option<&str>) -> Format {
        let media = ct.and_then(|ct| ct.split(';').next()).unwrap_or("").trim();
        if media.eq_ignore_ascii_case("application/openmetrics-text") {
            Format::OpenMetrics
        } else {
            Format::PrometheusText
        }
    }
}

/// What a valid body holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    /// Sample lines (in OpenMetrics, `_created` lines count too).
    pub samples: u64,
    /// Distinct metric families, from `# TYPE` lines or, without one, from a sample's name.
    pub families: u64,
}

/// Why a body is not valid exposition: the first problem found, with its 1-based line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct ParseError {
    /// 1-based line of the first problem.
    pub line: usize,
    /// What is wrong there.
    pub message: String,
}

/// Parses `body` as `format`, returning the counts or the first error.
///
/// # Errors
///
/// The first place where the body is not what Prometheus would accept for that format.
pub fn parse(body: &str, format: Format) -> Result<Summary, ParseError> {
    let mut parser = Parser {
        om: format == Format::OpenMetrics,
        families: HashMap::new(),
        last_sample_name: None,
        labels: Vec::new(),
        samples: 0,
    };
    parser.run(body)
}

/// The most characters of any offending token an error message quotes.
const MAX_QUOTE: usize = 40;

/// The message of one line's error; the line number is added by [`Parser::run`].
type LineResult<T> = Result<T, String>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Counter,
    Gauge,
    Histogram,
    GaugeHistogram,
    Summary,
    Info,
    StateSet,
    Unknown,
}

impl Kind {
    fn from_text(s: &str) -> Option<Kind> {
        Some(match s {
            "counter" => Kind::Counter,
            "gauge" => Kind::Gauge,
            "histogram" => Kind::Histogram,
            "summary" => Kind::Summary,
            "untyped" => Kind::Unknown,
            _ => return None,
        })
    }

    fn from_openmetrics(s: &str) -> Option<Kind> {
        Some(match s {
            "counter" => Kind::Counter,
            "gauge" => Kind::Gauge,
            "histogram" => Kind::Histogram,
            "gaugehistogram" => Kind::GaugeHistogram,
            "summary" => Kind::Summary,
            "info" => Kind::Info,
            "stateset" => Kind::StateSet,
            "unknown" => Kind::Unknown,
            _ => return None,
        })
    }
}

/// The sample-name suffixes that belong to a family of the given kinds (`foo_bucket` is part of
/// histogram `foo`, not a family of its own). A suffix only joins a family declared with one of
/// these kinds, as `expfmt` does; otherwise the sample starts a family of its own name.
const SUFFIXES: &[(&str, &[Kind])] = &[
    ("_bucket", &[Kind::Histogram, Kind::GaugeHistogram]),
    ("_count", &[Kind::Histogram, Kind::Summary]),
    ("_sum", &[Kind::Histogram, Kind::Summary]),
    ("_created", &[Kind::Counter, Kind::Histogram, Kind::Summary]),
    ("_total", &[Kind::Counter]),
    ("_gcount", &[Kind::GaugeHistogram]),
    ("_gsum", &[Kind::GaugeHistogram]),
    ("_info", &[Kind::Info]),
];

#[derive(Debug, Clone, Copy)]
struct Family {
    kind: Kind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Meta {
    Help,
    Type,
    Unit,
}

impl Meta {
    fn word(self) -> &'static str {
        match self {
            Meta::Help => "HELP",
            Meta::Type => "TYPE",
            Meta::Unit => "UNIT",
        }
    }
}

struct Parser<'a> {
    om: bool,
    /// Families by name (the inside of the quotes for a quoted name), borrowed from the body.
    families: HashMap<&'a str, Family>,
    /// The name of the previous sample: runs of one name skip the family lookup.
    last_sample_name: Option<&'a str>,
    /// Scratch for the label names of the current sample, for the duplicate check.
    labels: Vec<&'a str>,
    samples: u64,
}

impl<'a> Parser<'a> {
    fn run(&mut self, body: &'a str) -> Result<Summary, ParseError> {
        let mut pos = 0;
        let mut line_no = 0;
        while pos < body.len() {
            let rest = &body[pos..];
            let (line, next) = match rest.find('\n') {
                Some(n) => (&rest[..n], pos + n + 1),
                None => (rest, body.len()),
            };
            line_no += 1;
            if self.om && line.starts_with("# EOF") {
                if eof_ends_body(&rest[5..]) {
                    return Ok(self.summary());
                }
                if line == "# EOF" {
                    return Err(ParseError {
                        line: line_no + 1,
                        message: "unexpected data after \"# EOF\"".into(),
                    });
                }
            }
            // Prometheus's text lexer reads a NUL byte where a line's first token would start as
            // the end of the input (a zero-padded buffer scrapes fine).
            if !self.om && line.as_bytes().get(skip_ws(line.as_bytes(), 0)) == Some(&0) {
                return Ok(self.summary());
            }
            let result = if self.om {
                self.om_line(line)
            } else {
                self.text_line(line)
            };
            result.map_err(|message| ParseError { line: line_no, message })?;
            pos = next;
        }
        if self.om {
            return Err(ParseError {
                line: line_no + 1,
                message: "missing \"# EOF\" at the end of OpenMetrics exposition".into(),
            });
        }
        Ok(self.summary())
    }

    fn summary(&self) -> Summary {
        Summary {
            samples: self.samples,
            families: self.families.len() as u64,
        }
    }

    /// One line of the Prometheus text format: blank, a comment (maybe HELP or TYPE), or a sample.
    /// Spaces and tabs may surround every token, as Prometheus's lexer allows.
    fn text_line(&mut self, line: &'a str) -> LineResult<()> {
        let b = line.as_bytes();
        let i = skip_ws(b, 0);
        match b.get(i) {
            None => Ok(()),
            Some(b'#') => self.text_comment(line, i),
            Some(_) => self.sample(line, i),
        }
    }

    /// `#` at `hash`. Only `#`, whitespace, `HELP` or `TYPE`, whitespace is metadata; anything
    /// else (`#HELP`, `# HELPER`, `# UNIT`, a bare `# TYPE`) is an ignored comment.
    fn text_comment(&mut self, line: &'a str, hash: usize) -> LineResult<()> {
        let b = line.as_bytes();
        let word = skip_ws(b, hash + 1);
        if word == hash + 1 {
            return Ok(());
        }
        let meta = match line.get(word..word + 4) {
            Some("HELP") => Meta::Help,
            Some("TYPE") => Meta::Type,
            _ => return Ok(()),
        };
        let name_at = skip_ws(b, word + 4);
        if name_at == word + 4 {
            return Ok(());
        }
        let (name, end) = meta_name(line, name_at, meta)?;
        // Prometheus's lexer ends the name at the first character that cannot be in one and drops
        // exactly one byte after it, whatever it is: further whitespace stays in the text, so
        // `# TYPE foo  counter` is an invalid type, while `# TYPE foo-counter` declares `foo` a
        // counter. A multi-byte character there leaves invalid UTF-8, which the scrape refuses,
        // and a NUL byte there ends the input for its lexer, mid-line.
        let text = match line.get(end..).and_then(|rest| rest.chars().next()) {
            None => "",
            Some(c) if c.is_ascii() && c != '\0' => sub(line, end + 1, line.len()),
            Some(_) => {
                return Err(format!(
                    "invalid character {} after metric name at column {}",
                    got(line, end),
                    col(line, end)
                ))
            }
        };
        match meta {
            Meta::Type => {
                let kind = Kind::from_text(text).ok_or_else(|| format!("invalid metric type {}", quote(text)))?;
                self.declare(name, kind)
            }
            _ => Ok(()),
        }
    }

    /// One line of OpenMetrics (not `# EOF`, which [`Parser::run`] handles): no blank lines, no
    /// free comments, single spaces between tokens.
    fn om_line(&mut self, line: &'a str) -> LineResult<()> {
        match line.as_bytes().first() {
            None => Err("empty line is not allowed in OpenMetrics".into()),
            Some(b'#') => self.om_comment(line),
            Some(_) => self.sample(line, 0),
        }
    }

    fn om_comment(&mut self, line: &'a str) -> LineResult<()> {
        let b = line.as_bytes();
        if line.starts_with("# EOF") {
            return Err("unexpected data after \"# EOF\"".into());
        }
        let meta = if line.starts_with("# HELP") {
            Meta::Help
        } else if line.starts_with("# TYPE") {
            Meta::Type
        } else if line.starts_with("# UNIT") {
            Meta::Unit
        } else {
            return Err("invalid comment: OpenMetrics allows only # HELP, # TYPE, # UNIT and # EOF".into());
        };
        if b.get(6) != Some(&b' ') {
            return Err(format!(
                "expected \" \" after {} at column 7, got {}",
                meta.word(),
                got(line, 6)
            ));
        }
        let (name, end) = meta_name(line, 7, meta)?;
        if b.get(end) != Some(&b' ') {
            return Err(format!(
                "expected \" \" after metric name at column {}, got {}",
                col(line, end),
                got(line, end)
            ));
        }
        let text = sub(line, end + 1, line.len());
        match meta {
            Meta::Help => Ok(()),
            Meta::Type => {
                let kind =
                    Kind::from_openmetrics(text).ok_or_else(|| format!("invalid metric type {}", quote(text)))?;
                self.declare(name, kind)
            }
            Meta::Unit => {
                let nb = name.as_bytes();
                let is_suffix =
                    nb.len() > text.len() && name.ends_with(text) && nb.get(nb.len() - text.len() - 1) == Some(&b'_');
                if text.is_empty() || is_suffix {
                    Ok(())
                } else {
                    Err(format!(
                        "unit {} is not a suffix of metric name {}",
                        quote(text),
                        quote(name)
                    ))
                }
            }
        }
    }

    /// Records a `# TYPE` line. A second TYPE for a family, or one after the family's samples, is
    /// ignored: `expfmt` and `promtool check metrics` refuse them, but Prometheus's scrape takes
    /// them, and this probe must fail only where the scrape fails.
    fn declare(&mut self, name: &'a str, kind: Kind) -> LineResult<()> {
        // A cached sample name may have joined another family by suffix; now it may be its own.
        self.last_sample_name = None;
        match self.families.entry(name) {
            Entry::Occupied(_) => Ok(()),
            Entry::Vacant(e) => {
                e.insert(Family { kind });
                Ok(())
            }
        }
    }

    /// Counts a sample and attaches it to its family.
    fn note_sample(&mut self, name: &'a str) {
        self.samples += 1;
        if self.last_sample_name == Some(name) {
            return;
        }
        self.last_sample_name = Some(name);
        if self.families.contains_key(name) {
            return;
        }
        for (suffix, kinds) in SUFFIXES {
            if let Some(base) = name.strip_suffix(suffix) {
                if self.families.get(base).is_some_and(|f| kinds.contains(&f.kind)) {
                    return;
                }
            }
        }
        self.families.insert(name, Family { kind: Kind::Unknown });
    }

    /// A sample line whose first token starts at `start`:
    /// `name[{labels}] value [timestamp]`, or `{"quoted name", labels} value [timestamp]`, and in
    /// OpenMetrics an optional exemplar ` # {labels} value [timestamp]`.
    fn sample(&mut self, line: &'a str, start: usize) -> LineResult<()> {
        let b = line.as_bytes();
        let om = self.om;
        let mut i = start;
        let mut name: Option<&'a str> = None;
        self.labels.clear();
        match b.get(i) {
            Some(&c) if is_name_start(c) => {
                let end = scan_name(b, i + 1);
                name = Some(sub(line, i, end));
                i = end;
                match b.get(i) {
                    None | Some(b' ' | b'{') => {}
                    Some(b'\t') if !om => {}
                    // Prometheus's text lexer ends the name at the first character that cannot be
                    // in one, and the value may follow at once: `m-1` is `m` with the value -1.
                    Some(_) if !om && is_go_float(sub(line, i, scan_token(b, i, true))) => {}
                    Some(_) => return Err(bad_name_char(line, i)),
                }
            }
            Some(b'{') => {}
            _ => {
                return Err(format!(
                    "expected metric name at column {}, got {}",
                    col(line, i),
                    got(line, i)
                ))
            }
        }
        if !om {
            i = skip_ws(b, i);
        }
        if b.get(i) == Some(&b'{') {
            i = self.label_set(line, i, &mut name, false)?;
        }
        let Some(name) = name else {
            return Err("missing metric name in label set".into());
        };

        if om {
            let (vs, ve) = om_field(line, i, "metric value")?;
            check_value(sub(line, vs, ve), "invalid metric value")?;
            self.om_after_value(line, ve)?;
        } else {
            i = skip_ws(b, i);
            if i >= b.len() {
                return Err(format!(
                    "expected metric value at column {}, got end of line",
                    col(line, i)
                ));
            }
            let ve = scan_token(b, i, true);
            check_value(sub(line, i, ve), "invalid metric value")?;
            i = skip_ws(b, ve);
            if i < b.len() {
                let te = scan_token(b, i, true);
                let ts = sub(line, i, te);
                if !is_int_timestamp(ts) {
                    return Err(format!("invalid timestamp {}", quote(ts)));
                }
                i = skip_ws(b, te);
                if i < b.len() {
                    return Err(format!(
                        "unexpected {} after timestamp at column {}",
                        got(line, i),
                        col(line, i)
                    ));
                }
            }
        }
        self.note_sample(name);
        Ok(())
    }

    /// OpenMetrics after the value: end of line, ` timestamp`, and/or ` # {exemplar}`.
    fn om_after_value(&mut self, line: &'a str, mut i: usize) -> LineResult<()> {
        let b = line.as_bytes();
        let mut seen_ts = false;
        loop {
            if i >= b.len() {
                return Ok(());
            }
            let rest = sub(line, i, line.len());
            if rest.starts_with(" # {") {
                return self.exemplar(line, i + 3);
            }
            if rest.starts_with(" #") {
                return Err(format!(
                    "expected \" # {{\" to start an exemplar at column {}",
                    col(line, i)
                ));
            }
            if seen_ts {
                return Err(format!(
                    "unexpected {} after timestamp at column {}",
                    got(line, i + 1),
                    col(line, i + 1)
                ));
            }
            let (ts, te) = om_field(line, i, "timestamp")?;
            let text = sub(line, ts, te);
            if !is_float_timestamp(text) {
                return Err(format!("invalid timestamp {}", quote(text)));
            }
            seen_ts = true;
            i = te;
        }
    }

    /// ` # {labels} value [timestamp]`, with `open` at the `{`.
    fn exemplar(&mut self, line: &'a str, open: usize) -> LineResult<()> {
        let mut no_name = None;
        let i = self.label_set(line, open, &mut no_name, true)?;
        let (vs, ve) = om_field(line, i, "exemplar value")?;
        check_value(sub(line, vs, ve), "invalid exemplar value")?;
        if ve >= line.len() {
            return Ok(());
        }
        let (ts, te) = om_field(line, ve, "exemplar timestamp")?;
        let text = sub(line, ts, te);
        if !is_float_timestamp(text) {
            return Err(format!("invalid exemplar timestamp {}", quote(text)));
        }
        if te < line.len() {
            let at = te + 1;
            return Err(format!(
                "unexpected {} after exemplar timestamp at column {}",
                got(line, at),
                col(line, at)
            ));
        }
        Ok(())
    }

    /// A label set with `open` at the `{`; returns the index just past the `}`. A trailing comma
    /// is accepted in both formats, as Prometheus's parsers accept it (OpenMetrics since 2.51); a
    /// missing comma between pairs only in text, as only its parser allows. A quoted string alone (`{"my.metric", a="b"}`)
    /// is the metric name, stored in `name`. Exemplar label sets take no metric name and are not
    /// checked for duplicates (Prometheus does not either).
    fn label_set(
        &mut self,
        line: &'a str,
        open: usize,
        name: &mut Option<&'a str>,
        exemplar: bool,
    ) -> LineResult<usize> {
        let b = line.as_bytes();
        let om = self.om;
        let mut i = open + 1;
        loop {
            if !om {
                i = skip_ws(b, i);
            }
            let start = i;
            let (label, quoted) = match b.get(i) {
                Some(b'}') => {
                    i += 1;
                    break;
                }
                Some(&c) if is_label_start(c) => {
                    i = scan_label(b, i + 1);
                    (sub(line, start, i), false)
                }
                Some(b'"') => {
                    let (qs, qe) = scan_quoted(line, i, "quoted name")?;
                    i = qe + 1;
                    (sub(line, qs, qe), true)
                }
                _ => {
                    return Err(format!(
                        "expected label name at column {}, got {}",
                        col(line, i),
                        got(line, i)
                    ));
                }
            };
            if !om {
                i = skip_ws(b, i);
            }
            match b.get(i) {
                Some(b'=') => {
                    if label.is_empty() {
                        return Err(format!("empty label name at column {}", col(line, start)));
                    }
                    if !exemplar {
                        if label == "__name__" {
                            return Err("label name \"__name__\" is reserved".into());
                        }
                        self.labels.push(label);
                    }
                    i += 1;
                    if !om {
                        i = skip_ws(b, i);
                    }
                    if b.get(i) != Some(&b'"') {
                        return Err(format!(
                            "expected quoted label value at column {}, got {}",
                            col(line, i),
                            got(line, i)
                        ));
                    }
                    let (_, qe) = scan_quoted(line, i, "label value")?;
                    i = qe + 1;
                }
                Some(b',' | b'}') if quoted && !exemplar => {
                    if name.is_some() {
                        return Err(format!("second metric name at column {}", col(line, start)));
                    }
                    if label.is_empty() {
                        return Err(format!("empty metric name at column {}", col(line, start)));
                    }
                    *name = Some(label);
                }
                _ => {
                    return Err(format!(
                        "expected \"=\" after label name at column {}, got {}",
                        col(line, i),
                        got(line, i)
                    ));
                }
            }
            if !om {
                i = skip_ws(b, i);
            }
            match b.get(i) {
                Some(b',') => i += 1,
                Some(b'}') => {
                    i += 1;
                    break;
                }
                // Prometheus's text parser takes pairs without a comma between them (`{a="1" b="2"}`).
                _ if !om => {}
                _ => {
                    return Err(format!(
                        "expected \",\" or \"}}\" at column {}, got {}",
                        col(line, i),
                        got(line, i)
                    ));
                }
            }
        }
        if !exemplar {
            self.check_duplicate_labels()?;
        }
        Ok(i)
    }

    /// Prometheus fails a scrape whose sample repeats a label name.
    fn check_duplicate_labels(&mut self) -> LineResult<()> {
        let labels = &mut self.labels;
        if labels.len() <= 16 {
            for (n, later) in labels.iter().enumerate().skip(1) {
                if labels[..n].contains(later) {
                    return Err(format!("duplicate label name {}", quote(later)));
                }
            }
        } else {
            labels.sort_unstable();
            if let Some(pair) = labels.windows(2).find(|w| w[0] == w[1]) {
                return Err(format!("duplicate label name {}", quote(pair[0])));
            }
        }
        Ok(())
    }
}

/// The metric name of a HELP/TYPE/UNIT line at `i`, plain or quoted; returns it (without quotes)
/// and the index just past it.
fn meta_name(line: &str, i: usize, meta: Meta) -> LineResult<(&str, usize)> {
    let b = line.as_bytes();
    match b.get(i) {
        Some(&c) if is_name_start(c) => {
            let end = scan_name(b, i + 1);
            Ok((sub(line, i, end), end))
        }
        Some(b'"') => {
            let (qs, qe) = scan_quoted(line, i, "quoted name")?;
            if qs == qe {
                return Err(format!("empty metric name at column {}", col(line, i)));
            }
            Ok((sub(line, qs, qe), qe + 1))
        }
        _ => Err(format!(
            "expected metric name after {} at column {}, got {}",
            meta.word(),
            col(line, i),
            got(line, i)
        )),
    }
}

/// Whether what follows `# EOF` ends an OpenMetrics body: an optional newline, and NUL bytes
/// around it, which Prometheus's lexer skips while it reads the `# EOF` line.
fn eof_ends_body(after: &str) -> bool {
    let after = after.trim_start_matches('\0');
    after
        .strip_prefix('\n')
        .unwrap_or(after)
        .trim_start_matches('\0')
        .is_empty()
}

/// An OpenMetrics field: exactly one space at `i`, then a non-empty token up to the next space or
/// the end of the line. Returns the token's bounds.
fn om_field(line: &str, i: usize, what: &str) -> LineResult<(usize, usize)> {
    let b = line.as_bytes();
    match b.get(i) {
        None => return Err(format!("expected {what} at column {}, got end of line", col(line, i))),
        Some(b' ') => {}
        Some(_) => {
            return Err(format!(
                "expected \" \" before {what} at column {}, got {}",
                col(line, i),
                got(line, i)
            ))
        }
    }
    let start = i + 1;
    let end = scan_token(b, start, false);
    if end == start {
        return Err(format!(
            "expected {what} at column {}, got {}",
            col(line, start),
            got(line, start)
        ));
    }
    Ok((start, end))
}

/// A quoted string with the opening quote at `open`; returns the bounds of its inside. The format
/// specifies only `\\`, `\"` and `\n`, but Prometheus's scrape lexer takes any escaped
/// character (keeping e.g. `\t` verbatim), so this does too. A raw line break ends the line, so a
/// value spanning lines is reported as unterminated.
fn scan_quoted(line: &str, open: usize, what: &str) -> LineResult<(usize, usize)> {
    let b = line.as_bytes();
    let mut j = open + 1;
    while let Some(&c) = b.get(j) {
        match c {
            b'"' => return Ok((open + 1, j)),
            b'\\' => match b.get(j + 1) {
                Some(_) => j += 2,
                None => break,
            },
            _ => j += 1,
        }
    }
    Err(format!("unterminated {what} starting at column {}", col(line, open)))
}

/// Whether `s` is a float as Prometheus parses it: Go's `strconv.ParseFloat` without hex floats
/// and underscores. So `NaN`, `nan`, `+Inf`, `-inf`, `Infinity`, `1e3`, `.5`, `5.` are values;
/// `+NaN`, `0x1p3`, `1_000`, `1e400` (out of range) are not.
fn is_go_float(s: &str) -> bool {
    let b = s.as_bytes();
    let (signed, rest) = match b.first() {
        Some(b'+' | b'-') => (true, &b[1..]),
        _ => (false, b),
    };
    if rest.eq_ignore_ascii_case(b"inf") || rest.eq_ignore_ascii_case(b"infinity") {
        return true;
    }
    if rest.eq_ignore_ascii_case(b"nan") {
        return !signed;
    }
    let mut i = 0;
    let mut digits = 0;
    while rest.get(i).is_some_and(u8::is_ascii_digit) {
        i += 1;
        digits += 1;
    }
    if rest.get(i) == Some(&b'.') {
        i += 1;
        while rest.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
            digits += 1;
        }
    }
    if digits == 0 {
        return false;
    }
    let mut exponent = false;
    if matches!(rest.get(i), Some(b'e' | b'E')) {
        exponent = true;
        i += 1;
        if matches!(rest.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        let exp_start = i;
        while rest.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        if i == exp_start {
            return false;
        }
    }
    if i != rest.len() {
        return false;
    }
    // Go reports overflow as an error; only an exponent or a very long mantissa can overflow.
    if exponent || rest.len() > 300 {
        return s.parse::<f64>().is_ok_and(f64::is_finite);
    }
    true
}

fn check_value(s: &str, what: &str) -> LineResult<()> {
    if is_go_float(s) {
        Ok(())
    } else {
        Err(format!("{what} {}", quote(s)))
    }
}

/// A text-format timestamp: digits only (Prometheus's lexer takes no sign), fitting an i64.
fn is_int_timestamp(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|c| c.is_ascii_digit()) && s.parse::<i64>().is_ok()
}

/// An OpenMetrics timestamp: a float in seconds, not NaN or infinite.
fn is_float_timestamp(s: &str) -> bool {
    if !is_go_float(s) {
        return false;
    }
    let b = s.as_bytes();
    let rest = match b.first() {
        Some(b'+' | b'-') => &b[1..],
        _ => b,
    };
    rest.first().is_some_and(|c| c.is_ascii_digit() || *c == b'.')
}

fn is_name_start(c: u8) -> bool {
    c.is_ascii_alphabetic() || c == b'_' || c == b':'
}

fn is_label_start(c: u8) -> bool {
    c.is_ascii_alphabetic() || c == b'_'
}

/// The end of a metric name whose rest starts at `i`: `[a-zA-Z0-9_:]*`.
fn scan_name(b: &[u8], mut i: usize) -> usize {
    while b
        .get(i)
        .is_some_and(|&c| c.is_ascii_alphanumeric() || c == b'_' || c == b':')
    {
        i += 1;
    }
    i
}

/// The end of a label name whose rest starts at `i`: `[a-zA-Z0-9_]*`.
fn scan_label(b: &[u8], mut i: usize) -> usize {
    while b.get(i).is_some_and(|&c| c.is_ascii_alphanumeric() || c == b'_') {
        i += 1;
    }
    i
}

/// The end of a token starting at `i`: up to a space (or a tab, if `tabs`) or the end of line.
fn scan_token(b: &[u8], mut i: usize, tabs: bool) -> usize {
    while b.get(i).is_some_and(|&c| c != b' ' && !(tabs && c == b'\t')) {
        i += 1;
    }
    i
}

fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while matches!(b.get(i), Some(b' ' | b'\t')) {
        i += 1;
    }
    i
}

/// `line[start..end]`, or "" if those are not character boundaries (they always are, since every
/// index here comes from scanning for ASCII bytes; this keeps a mistake from ever panicking).
fn sub(line: &str, start: usize, end: usize) -> &str {
    line.get(start..end).unwrap_or("")
}

/// The 1-based column (in characters) of byte index `i`.
fn col(line: &str, i: usize) -> usize {
    line.get(..i).map_or(i, |s| s.chars().count()) + 1
}

fn bad_name_char(line: &str, i: usize) -> String {
    format!(
        "invalid character {} in metric name at column {}",
        got(line, i),
        col(line, i)
    )
}

/// The token at `i` for an error message: a run of name characters, or else one character.
fn got(line: &str, i: usize) -> String {
    let rest = match line.get(i..) {
        Some(rest) if !rest.is_empty() => rest,
        _ => return "end of line".into(),
    };
    let is_word = |c: &u8| c.is_ascii_alphanumeric() || *c == b'_' || *c == b':';
    let len = match rest.as_bytes().iter().take_while(|c| is_word(c)).count() {
        0 => rest.chars().next().map_or(1, char::len_utf8),
        n => n,
    };
    quote(sub(rest, 0, len))
}

/// `s` quoted for an error message, cut after [`MAX_QUOTE`] characters.
fn quote(s: &str) -> String {
    match s.char_indices().nth(MAX_QUOTE) {
        Some((cut, _)) => format!("{:?}", format!("{}...", sub(s, 0, cut))),
        None => format!("{s:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    include!("../tests/fixtures/exposition/cases.rs");

    fn text(body: &str) -> Result<Summary, ParseError> {
        parse(body, Format::PrometheusText)
    }

    fn om(body: &str) -> Result<Summary, ParseError> {
        parse(body, Format::OpenMetrics)
    }

    #[test]
    fn content_type_picks_openmetrics_only_for_the_openmetrics_media_type() {
        let cases = [
            (None, Format::PrometheusText),
            (Some(""), Format::PrometheusText),
            (Some("text/plain; version=0.0.4; charset=utf-8"), Format::PrometheusText),
            (Some("text/plain"), Format::PrometheusText),
            (Some("application/json"), Format::PrometheusText),
            (
                Some("application/openmetrics-text; version=1.0.0; charset=utf-8"),
                Format::OpenMetrics,
            ),
            (Some("application/openmetrics-text"), Format::OpenMetrics),
            (Some("Application/OpenMetrics-Text;version=0.0.1"), Format::OpenMetrics),
            (
                Some("  application/openmetrics-text ; version=1.0.0"),
                Format::OpenMetrics,
            ),
            (Some("application/openmetrics-textual"), Format::PrometheusText),
        ];
        for (ct, want) in cases {
            assert_eq!(Format::from_content_type(ct), want, "{ct:?}");
        }
    }

    #[test]
    fn openmetrics_fixture_is_not_valid_prometheus_text() {
        // Exemplars, float timestamps: the text parser must not accept OpenMetrics by accident.
        assert!(text(OPENMETRICS).is_err());
    }

    #[test]
    fn text_fixtures_are_not_valid_openmetrics() {
        assert!(om(NODE_EXPORTER).is_err());
        assert!(om(PROXMOX).is_err());
    }

    /// Every accepted body of `cases.rs`, with its exact counts.
    #[test]
    fn accepted_bodies_parse_with_their_counts() {
        for (why, format, body, samples, families) in accepted() {
            assert_eq!(parse(&body, format), Ok(Summary { samples, families }), "{why}");
        }
    }

    #[test]
    fn every_version_note_names_an_accepted_body() {
        let accepted = accepted();
        for (why, ..) in SINCE {
            assert!(accepted.iter().any(|(w, ..)| w == why), "{why}");
        }
    }

    /// Every refused body of `cases.rs`, with its exact message.
    #[test]
    fn refused_bodies_fail_with_their_messages() {
        for (format, body, want) in refused() {
            let got = parse(&body, format).map_err(|e| e.to_string());
            assert_eq!(got, Err(want), "{format:?} {body:?}");
        }
    }

    /// A tiny deterministic generator, so the mutation test needs no crates and is reproducible.
    struct Lcg(u64);

    impl Lcg {
        fn next(&mut self) -> usize {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (self.0 >> 33) as usize
        }
    }

    fn check_no_panic(body: &str) {
        for format in [Format::PrometheusText, Format::OpenMetrics] {
            if let Err(e) = parse(body, format) {
                // Messages stay short whatever the input.
                assert!(e.message.chars().count() < 600, "{}", e.message);
                assert!(e.line >= 1 && e.line <= body.split('\n').count() + 1, "{e}");
            }
        }
    }

    #[test]
    fn truncated_and_mutated_bodies_never_panic() {
        let mut rng = Lcg(0x5eed);
        let inserts = [
            "\"", "\\", "{", "}", ",", "=", " ", "\t", "\n", "#", "# ", "é", "⛰", "\0", "\r", "0", "e", "x", "_", ":",
            ".", "+", "-", "\\n", "# EOF\n", "\"\"", "\\\\",
        ];
        for fixture in [NODE_EXPORTER, PROXMOX, OPENMETRICS] {
            for cut in (0..=fixture.len()).filter(|&n| fixture.is_char_boundary(n)).step_by(23) {
                check_no_panic(&fixture[..cut]);
            }
            let chars: Vec<char> = fixture.chars().collect();
            for _ in 0..1000 {
                let mut mutated: Vec<char> = chars.clone();
                for _ in 0..1 + rng.next() % 3 {
                    let at = rng.next() % (mutated.len() + 1);
                    match rng.next() % 3 {
                        0 if at < mutated.len() => {
                            mutated.remove(at);
                        }
                        _ => {
                            let ins = inserts[rng.next() % inserts.len()];
                            for (k, c) in ins.chars().enumerate() {
                                mutated.insert(at + k, c);
                            }
                        }
                    }
                }
                check_no_panic(&mutated.into_iter().collect::<String>());
            }
        }
        // Pathological shapes.
        let huge = format!("m{{a=\"{}", "x".repeat(1 << 20));
        check_no_panic(&huge);
        check_no_panic(&format!("{{{}", "\"a\",".repeat(10_000)));
        check_no_panic(&"\\".repeat(1000));
        check_no_panic("\"");
        check_no_panic("{");
        check_no_panic("m{a=\"\\");
        check_no_panic("# TYPE \"");
        check_no_panic("# HELP \"\\");
        check_no_panic("m 1 # {");
        check_no_panic("m 1 # {a=\"b\"} 1 ");
    }
}
