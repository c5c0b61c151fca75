//! Server-sent events (`text/event-stream`, the WHATWG format) from a
//! response body: how the LLM APIs stream their answers.

/// One event: its type (`event:`, if given) and its data lines joined.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    pub event: Option<String>,
    pub data: String,
}

/// The events of a whole body. Comments (`:` lines), `id:` and `retry:`
/// are skipped; an event not ended by a blank line still counts (the
/// stream may be cut).
pub fn events(body: &[u8]) -> Vec<SseEvent> {
    let text = String::from_utf8_lossy(body);
    let mut out = Vec::new();
    let mut event: Option<String> = None;
    let mut data: Vec<&str> = Vec::new();
    let mut flush = |event: &mut Option<String>, data: &mut Vec<&str>| {
        if !data.is_empty() {
            out.push(SseEvent {
                event: event.take(),
                data: data.join("\n"),
            });
        }
        event.take();
        data.clear();
    };
    for line in text.split('\n') {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.is_empty() {
            flush(&mut event, &mut data);
            continue;
        }
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line, ""),
        };
        match field {
            "" => {}
            "event" => event = Some(value.to_string()),
            "data" => data.push(value),
            _ => {}
        }
    }
    flush(&mut event, &mut data);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anthropic_style_events_with_crlf_comments_and_multiline_data() {
        let body = b": ping\r\nevent: message_start\r\ndata: {\"a\":1}\r\n\r\nevent: message_delta\ndata: line one\ndata:line two\nid: 7\n\ndata: [DONE]";
        let got = events(body);
        assert_eq!(
            got,
            [
                SseEvent {
                    event: Some("message_start".into()),
                    data: "{\"a\":1}".into()
                },
                SseEvent {
                    event: Some("message_delta".into()),
                    data: "line one\nline two".into()
                },
                SseEvent {
                    event: None,
                    data: "[DONE]".into()
                },
            ]
        );
    }

    #[test]
    fn an_event_without_data_is_no_event() {
        assert!(events(b"event: ping\n\n: comment\n\n").is_empty());
    }
}
