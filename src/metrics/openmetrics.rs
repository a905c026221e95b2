//! Content negotiation: OpenMetrics for a scraper that asks for it (Prometheus asks first),
//! the Prometheus text format otherwise.

/// The content type of the OpenMetrics exposition.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Whether an `Accept` header asks for OpenMetrics: some `application/openmetrics-text` range
/// with a quality above 0 and at least as high as the best one the text format matches
/// (`text/plain`, `text/*`, `*/*`). `q=0` means "not this" (RFC 9110 §12.4.2).
pub fn wanted(accept: Option<&str>) -> bool {
    let Some(accept) = accept else {
        return false;
    };
    let (mut om, mut text) = (0.0f32, 0.0f32);
    for range in accept.split(',') {
        let mut parts = range.split(';');
        let media = parts.next().unwrap_or("").trim().to_ascii_lowercase();
        let q = parts
            .filter_map(|p| p.split_once('='))
            .find(|(k, _)| k.trim().eq_ignore_ascii_case("q"))
            .map(|(_, v)| v.trim().parse::<f32>().unwrap_or(0.0).clamp(0.0, 1.0))
            .unwrap_or(1.0);
        match media.as_str() {
            "application/openmetrics-text" => om = om.max(q),
            "text/plain" | "text/*" | "*/*" => text = text.max(q),
            _ => {}
        }
    }
    om > 0.0 && om >= text
}

#[cfg(test)]
mod tests {
    use super::wanted;

    #[test]
    fn openmetrics_only_when_asked_with_a_quality_above_zero() {
        // Prometheus 3's default scrape Accept header.
        assert!(wanted(Some(
            "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.6,\
             application/openmetrics-text;version=0.0.1;q=0.5,text/plain;version=1.0.0;escaping=allow-utf-8;q=0.4,\
             text/plain;version=0.0.4;q=0.3,*/*;q=0.2"
        )));
        assert!(wanted(Some("application/openmetrics-text")));
        assert!(wanted(Some(
            "application/openmetrics-text;version=1.0.0,text/plain;q=0.5"
        )));
        assert!(!wanted(None));
        assert!(!wanted(Some("text/plain")));
        assert!(!wanted(Some("*/*")));
        assert!(!wanted(Some(
            "application/openmetrics-text;version=1.0.0;q=0,text/plain"
        )));
        assert!(!wanted(Some("application/openmetrics-text; q=0")));
        assert!(!wanted(Some("application/openmetrics-text;q=0.000")));
        assert!(!wanted(Some("text/plain;q=1,application/openmetrics-text;q=0.5")));
    }
}
