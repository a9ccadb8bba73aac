//! One decision, top to bottom: [`gather`] reads what the call rests on
//! (the policy era, registry editions, contact records, attempts, where the
//! number is), [`crate::rules::evaluate`] decides (pure), and the gateway
//! commits (reserves the attempt, logs, counts). CheckCall, ScreenNumbers,
//! the property test and the fuzz target all decide through [`decide`].

mod gather;
mod standalone;

pub use gather::{Decided, DecisionSources, RunSetting, decide, decide_reusing, normalize_called};
pub use standalone::StandaloneDecider;
