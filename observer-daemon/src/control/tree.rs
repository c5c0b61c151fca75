//! `process_tree`: a process's ancestors and descendants from the live
//! process table, each with the agent it is attributed to.
use std::collections::HashMap;

use serde_json::{json, Value};

use crate::enrich::process_table::{Process, ProcessTable};

/// At most this many descendants are listed (the answer stays small).
const MAX_DESCENDANTS: usize = 4096;
const MAX_ANCESTORS: usize = 64;

fn node(p: &Process) -> Value {
    json!({
        "pid": p.pid,
        "ppid": p.ppid,
        "comm": p.image.comm,
        "exe": p.image.exe,
        "argv": p.image.argv,
        "uid": p.image.uid,
        "agent": p.agent.as_deref(),
        "watched": p.watched,
        "origin": p.origin,
        "exited": p.has_exited(),
        "exit_code": p.exit_code,
    })
}

/// `{"pid", "ancestors": [root first], "process", "children": [nested],
/// "truncated"}`; an error when the pid is not in the table.
pub fn process_tree(table: &ProcessTable, pid: u32) -> Result<Value, String> {
    let Some(me) = table.get(pid) else {
        return Err(format!(
            "pid {pid} is not in the daemon's process table (it never ran while the daemon \
             observed, or it exited and was evicted)"
        ));
    };
    let mut ancestors: Vec<Value> = table
        .ancestors(pid, MAX_ANCESTORS)
        .into_iter()
        .map(node)
        .collect();
    ancestors.reverse();
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    for p in table.pids() {
        if let Some(proc_) = table.get(p) {
            if proc_.ppid != 0 && proc_.pid != proc_.ppid {
                children.entry(proc_.ppid).or_default().push(p);
            }
        }
    }
    for list in children.values_mut() {
        list.sort_unstable();
    }
    let mut budget = MAX_DESCENDANTS;
    let mut seen = std::collections::HashSet::from([pid]);
    let process = subtree(table, me, &children, &mut budget, &mut seen);
    Ok(json!({
        "pid": pid,
        "ancestors": ancestors,
        "process": process,
        "truncated": budget == 0,
    }))
}

fn subtree(
    table: &ProcessTable,
    p: &Process,
    children: &HashMap<u32, Vec<u32>>,
    budget: &mut usize,
    seen: &mut std::collections::HashSet<u32>,
) -> Value {
    let mut v = node(p);
    let mut kids = Vec::new();
    for c in children.get(&p.pid).into_iter().flatten() {
        if *budget == 0 {
            break;
        }
        // The table is built from events that may arrive out of order:
        // never follow a cycle.
        if !seen.insert(*c) {
            continue;
        }
        if let Some(child) = table.get(*c) {
            *budget -= 1;
            kids.push(subtree(table, child, children, budget, seen));
        }
    }
    v["children"] = Value::Array(kids);
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::enrich::process_table::{Image, Origin};

    #[test]
    fn ancestors_root_first_and_nested_children_with_agents() {
        let mut t = ProcessTable::new(100);
        t.insert_scanned(Process::new(1, 0, 1, Origin::ProcScan));
        let mut agent = Process::new(10, 1, 2, Origin::ProcScan);
        agent.agent = Some("claude".into());
        t.insert_scanned(agent);
        t.on_fork(10, 11, 3);
        t.on_exec(
            11,
            10,
            4,
            Image {
                comm: "sh".into(),
                exe: Some("/bin/sh".into()),
                ..Default::default()
            },
        );
        t.on_fork(11, 12, 5);
        let v = process_tree(&t, 11).unwrap();
        assert_eq!(v["ancestors"][0]["pid"], 1);
        assert_eq!(v["ancestors"][1]["pid"], 10);
        assert_eq!(v["ancestors"][1]["agent"], "claude");
        assert_eq!(v["process"]["pid"], 11);
        assert_eq!(v["process"]["agent"], "claude");
        assert_eq!(v["process"]["exe"], "/bin/sh");
        assert_eq!(v["process"]["children"][0]["pid"], 12);
        assert_eq!(v["process"]["children"][0]["agent"], "claude");
        assert_eq!(v["truncated"], false);
        assert!(process_tree(&t, 99).unwrap_err().contains("pid 99"));
    }
}
