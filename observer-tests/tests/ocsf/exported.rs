//! `observerctl export --format ocsf` of a store, every event checked
//! against the committed OCSF 1.3.0 schema: for the tests of the agent's
//! own actions (LLM requests, MCP sessions and calls), which include it.
use std::path::Path;

use serde_json::Value;

#[path = "validator.rs"]
#[allow(dead_code)]
mod validator;

/// Every exported event of `db`, each valid against the schema.
pub fn checked_ocsf_events(db: &Path) -> Vec<Value> {
    let schema = validator::Schema::load();
    let r = observer_testkit::ctl(
        observer_testkit::CtlTarget::Db(db),
        &["export", "--format", "ocsf"],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    r.stdout
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .inspect(|ev| {
            let errors = schema.validate(ev);
            assert!(errors.is_empty(), "{errors:#?}\n{ev:#}");
        })
        .collect()
}
