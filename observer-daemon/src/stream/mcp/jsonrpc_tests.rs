use serde_json::json;

use super::*;

fn frame(text: &str, truncated: bool) -> Frame {
    Frame {
        bytes: text.as_bytes().to_vec(),
        len: text.len() as u64,
        truncated,
        gap: false,
        sha256: [0; 32],
        first_ns: 0,
    }
}

#[test]
fn requests_notifications_results_and_errors() {
    let m = parse(&frame(
        r#"{"method":"tools/call","params":{"name":"get_current_time","arguments":{"timezone":"Europe/Paris"}},"jsonrpc":"2.0","id":3}"#,
        false,
    ))
    .unwrap();
    assert_eq!(m.len(), 1);
    assert_eq!(m[0].id.as_deref(), Some("3"));
    assert_eq!(m[0].method(), Some("tools/call"));
    assert_eq!(m[0].name.as_deref(), Some("get_current_time"));
    assert!(m[0].is_request());
    let Body::Call { params, .. } = &m[0].body else {
        panic!()
    };
    assert_eq!(
        params.as_ref().unwrap()["arguments"],
        json!({"timezone": "Europe/Paris"})
    );

    let n = parse(&frame(
        r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
        false,
    ))
    .unwrap();
    assert_eq!(n[0].id, None);
    assert!(!n[0].is_request());

    let r = parse(&frame(
        r#"{"jsonrpc":"2.0","id":"a-1","result":{"content":[],"isError":true}}"#,
        false,
    ))
    .unwrap();
    assert_eq!(r[0].id.as_deref(), Some(r#""a-1""#));
    assert_eq!(
        r[0].body,
        Body::Result(json!({"content": [], "isError": true}))
    );

    let e = parse(&frame(
        r#"{"jsonrpc":"2.0","id":4,"error":{"code":-32602,"message":"Unknown tool: nope"}}"#,
        false,
    ))
    .unwrap();
    assert_eq!(e[0].body, Body::Error { code: -32602 });
}

#[test]
fn a_batch_gives_each_message() {
    let m = parse(&frame(
        r#"[{"jsonrpc":"2.0","id":1,"method":"ping"},{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":1}}]"#,
        false,
    ))
    .unwrap();
    assert_eq!(m.len(), 2);
    assert_eq!(m[1].method(), Some("notifications/cancelled"));
}

#[test]
fn what_is_not_json_rpc_is_told_apart() {
    assert_eq!(parse(&frame("hello", false)), Err(NotRpc::NotJson));
    assert_eq!(
        parse(&frame(r#"{"level":"info"}"#, false)),
        Err(NotRpc::NotJsonRpc)
    );
    assert_eq!(
        parse(&frame(r#"{"jsonrpc":"1.0","id":1,"result":1}"#, false)),
        Err(NotRpc::NotJsonRpc)
    );
    assert_eq!(parse(&frame("[]", false)), Err(NotRpc::NotJsonRpc));
}

#[test]
fn a_cut_frame_keeps_the_names_that_came_before_the_cut() {
    // The SDK's key order: method and params first, id last.
    let m = parse(&frame(
        r#"{"method":"tools/call","params":{"name":"write_file","arguments":{"id":99,"name":"x","content":"aaaa"#,
        true,
    ))
    .unwrap();
    assert_eq!(m[0].method(), Some("tools/call"));
    assert_eq!(m[0].name.as_deref(), Some("write_file"));
    assert_eq!(
        m[0].id, None,
        "the id inside the arguments is not the message's"
    );
    assert!(m[0].truncated);

    let m = parse(&frame(
        r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"a\"b","argu"#,
        true,
    ))
    .unwrap();
    assert_eq!(m[0].id.as_deref(), Some("7"));
    assert_eq!(m[0].name.as_deref(), Some("a\"b"));

    let m = parse(&frame(
        r#"{"jsonrpc":"2.0","id":"s","result":{"content":[{"type":"text","text":"zz"#,
        true,
    ))
    .unwrap();
    assert_eq!(m[0].id.as_deref(), Some(r#""s""#));
    assert_eq!(m[0].body, Body::Unknown);

    // A number the cut may have shortened is not taken.
    let m = parse(&frame(r#"{"jsonrpc":"2.0","id":12"#, true)).unwrap();
    assert_eq!(m[0].id, None);
}
