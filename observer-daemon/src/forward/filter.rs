//! Which receipts a sink forwards.
use super::config::FilterConfig;
use crate::export::ReceiptItem;

#[derive(Debug, Clone, Default)]
pub struct Filter {
    cfg: FilterConfig,
}

impl Filter {
    pub fn new(cfg: FilterConfig) -> Filter {
        Filter { cfg }
    }

    pub fn matches(&self, r: &ReceiptItem) -> bool {
        let any = |list: &[String], f: &dyn Fn(&str) -> bool| {
            list.is_empty() || list.iter().any(|p| f(p))
        };
        any(&self.cfg.agents, &|p| {
            p == r.agent_id || (p == "unregistered:*" && r.agent_id.starts_with("unregistered:"))
        }) && any(&self.cfg.actions, &|p| match p.strip_suffix(".*") {
            Some(prefix) => r
                .action_type
                .strip_prefix(prefix)
                .is_some_and(|rest| rest.starts_with('.')),
            None => p == r.action_type,
        }) && any(&self.cfg.risks, &|p| p == r.risk_class)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::export::fixtures::exec_receipt;

    #[test]
    fn agent_action_prefix_and_risk() {
        let r = exec_receipt();
        let f = |agents: &[&str], actions: &[&str], risks: &[&str]| {
            Filter::new(FilterConfig {
                agents: agents.iter().map(|s| s.to_string()).collect(),
                actions: actions.iter().map(|s| s.to_string()).collect(),
                risks: risks.iter().map(|s| s.to_string()).collect(),
            })
            .matches(&r)
        };
        assert!(f(&[], &[], &[]));
        assert!(f(&["claude"], &["process.*"], &["medium", "high"]));
        assert!(!f(&["codex"], &[], &[]));
        assert!(!f(&[], &["proc.*"], &[]));
        assert!(!f(&[], &["network.connect"], &[]));
        assert!(!f(&[], &[], &["high"]));
        let mut shadow = r.clone();
        shadow.agent_id = "unregistered:abcd".into();
        assert!(Filter::new(FilterConfig {
            agents: vec!["unregistered:*".into()],
            ..Default::default()
        })
        .matches(&shadow));
    }
}
