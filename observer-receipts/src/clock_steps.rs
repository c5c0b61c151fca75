//! Wall-clock steps recorded in the log (`observer.clock_step` receipts,
//! see the daemon's `clock` module). A receipt's `issued_at` was read on the clock of
//! its time; every step committed after it moved that clock. Adding those
//! later steps gives its time on today's clock. Retention uses the forward
//! steps (a receipt issued before the clock jumped ahead is not old), the
//! verifier the backward ones (a receipt issued before the clock was set
//! back may lie ahead of today's clock).
use super::{
    json,
    store::{Store, StoreError},
};

/// The steps of a store, in log order.
#[derive(Debug, Default, Clone)]
pub struct Corrections {
    /// Log index of each step receipt, ascending.
    leaves: Vec<u64>,
    /// `after[i]`: the sum of the steps at `leaves[i..]`.
    after: Vec<i128>,
}

impl Corrections {
    /// Reads every `observer.clock_step` receipt's `step_ns`. Observer
    /// receipts always keep their contexts; one that does not parse
    /// counts as no step (the verifier reports it on its own).
    pub fn load(store: &Store) -> Result<Corrections, StoreError> {
        let sql = |source| StoreError::Sqlite {
            path: store.path().to_owned(),
            source,
        };
        let mut stmt = store
            .connection()
            .prepare(
                "SELECT r.leaf_index, c.context FROM receipts r JOIN contexts c USING (leaf_index)
                 WHERE r.action_type = 'observer.clock_step' ORDER BY r.leaf_index",
            )
            .map_err(sql)?;
        let rows: Vec<(i64, String)> = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .and_then(|rows| rows.collect())
            .map_err(sql)?;
        Ok(Corrections::from_contexts(
            rows.into_iter()
                .map(|(leaf, context)| (leaf as u64, context)),
        ))
    }

    /// From the `(leaf_index, context)` of every `observer.clock_step`
    /// receipt in log order (a context that does not parse counts as no
    /// step).
    pub fn from_contexts(rows: impl IntoIterator<Item = (u64, String)>) -> Corrections {
        Corrections::from_steps(rows.into_iter().filter_map(|(leaf, context)| {
            let context = json::parse_strict(context.as_bytes()).ok()?;
            let step = context["step_ns"].as_str()?.parse().ok()?;
            Some((leaf, step))
        }))
    }

    /// From `(leaf_index, step_ns)` pairs in log order.
    pub fn from_steps(steps: impl IntoIterator<Item = (u64, i64)>) -> Corrections {
        let (leaves, steps): (Vec<u64>, Vec<i64>) = steps.into_iter().unzip();
        let mut after = vec![0i128; steps.len()];
        let mut sum = 0i128;
        for (i, s) in steps.iter().enumerate().rev() {
            sum += i128::from(*s);
            after[i] = sum;
        }
        Corrections { leaves, after }
    }

    /// Whether the log records no clock step (every correction is 0).
    pub fn is_empty(&self) -> bool {
        self.leaves.is_empty()
    }

    /// The sum of the steps committed after `leaf_index`: what its
    /// `issued_at` is off by on today's clock.
    pub fn after(&self, leaf_index: u64) -> i128 {
        let i = self.leaves.partition_point(|&l| l <= leaf_index);
        self.after.get(i).copied().unwrap_or(0)
    }

    /// Log index ranges `[from, to)` that share one correction, with it:
    /// up to each step receipt, then from it on.
    pub fn segments(&self, size: u64) -> Vec<(u64, u64, i128)> {
        let mut out = Vec::with_capacity(self.leaves.len() + 1);
        let mut from = 0;
        for (&leaf, &c) in self.leaves.iter().zip(&self.after) {
            out.push((from, leaf, c));
            from = leaf;
        }
        out.push((from, size.max(from), 0));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn later_steps_add_up_per_receipt() {
        // +3 h at leaf 10, -2 h at leaf 20.
        let c = Corrections::from_steps([(10, 10_800), (20, -7_200)]);
        assert_eq!(c.after(0), 3_600);
        assert_eq!(c.after(9), 3_600);
        // The step receipt was issued on the new clock.
        assert_eq!(c.after(10), -7_200);
        assert_eq!(c.after(19), -7_200);
        assert_eq!(c.after(20), 0);
        assert_eq!(c.after(1_000), 0);
        assert_eq!(
            c.segments(30),
            vec![(0, 10, 3_600), (10, 20, -7_200), (20, 30, 0)]
        );
        assert_eq!(Corrections::default().segments(5), vec![(0, 5, 0)]);
    }
}
