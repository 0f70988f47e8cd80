//! Properties of the Ray Data run's bookkeeping (`curator_core::watch`).

mod fixed_seed;

use std::collections::HashMap;

use curator_core::{CallBook, Claims, NodeRoom};
use proptest::prelude::*;

proptest! {
    #![proptest_config(fixed_seed::config(256))]

    /// Free room never goes below zero nor above what Ray shows free, and only drops as claims grow.
    #[test]
    fn free_room_is_bounded_and_monotone(
        nodes in prop::collection::vec((0.0f64..8.0, 0.0f64..2.0, 0.0f64..8.0, 0.0f64..2.0), 1..4),
        claims in prop::collection::vec(prop::collection::vec((0.0f64..4.0, 0.0f64..1.0), 1..4), 0..4),
    ) {
        let nodes: Vec<NodeRoom> = nodes.iter().enumerate()
            .map(|(i, &(c, g, tc, tg))| (format!("n{i}"), c.min(tc), g.min(tg), tc, tg)).collect();
        let mut book = Claims::default();
        let mut prev = book.free(&nodes);
        for (k, per) in claims.iter().enumerate() {
            let per: HashMap<String, (f64, f64)> =
                per.iter().enumerate().map(|(i, &r)| (format!("n{i}"), r)).collect();
            book.add(&format!("r{k}"), per);
            let now = book.free(&nodes);
            for ((n, (c, g)), (pc, pg)) in nodes.iter().zip(&now).zip(&prev) {
                prop_assert!(*c >= 0.0 && *g >= 0.0 && *c <= n.1 && *g <= n.2);
                prop_assert!(c <= pc && g <= pg);
            }
            prev = now;
        }
    }

    /// Worker deaths counted by `begin` never include attempts that timed out.
    #[test]
    fn deaths_exclude_timeouts(steps in prop::collection::vec(any::<bool>(), 1..20)) {
        let mut b = CallBook::new(0);
        let mut deaths = 0u32;
        for timed_out in steps {
            prop_assert_eq!(b.begin("c"), deaths);
            if timed_out {
                b.timed_out(0, vec!["t".into()], 1.0, "c");
            } else {
                deaths += 1;
            }
        }
    }
}
