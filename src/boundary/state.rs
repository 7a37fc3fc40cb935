//! The sealed pipeline states. Each is an uninhabited marker; what a state has proven is carried
//! by the [`Invocation`](super::Invocation) in a field whose type only this crate can name.

use std::sync::Arc;

use crate::audit::Submitted;
use crate::policy::{QuotaPermit, SessionContext, ToolName};
use crate::tools::ErasedTool;

/// A state of the execution pipeline. Sealed: the states below are the only ones.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a sqlwarden pipeline state",
    label = "not one of Unvalidated, Resolved, ModeChecked, Authorized, Admitted",
    note = "the pipeline states are sealed: only sqlwarden defines them, so no stage can be added or skipped"
)]
pub trait State: sealed::Sealed {}

/// Built from the raw call: nothing proven.
#[derive(Debug)]
pub enum Unvalidated {}
/// Session context valid, tool found: who is calling, which tool, its access class.
#[derive(Debug)]
pub enum Resolved {}
/// The server mode allows the tool's access class.
#[derive(Debug)]
pub enum ModeChecked {}
/// A grant allows this caller to invoke this tool.
#[derive(Debug)]
pub enum Authorized {}
/// Quota reserved: the call may consume resources now.
#[derive(Debug)]
pub enum Admitted {}

impl State for Unvalidated {}
impl State for Resolved {}
impl State for ModeChecked {}
impl State for Authorized {}
impl State for Admitted {}

pub(crate) mod sealed {
    use super::*;

    #[diagnostic::on_unimplemented(
        message = "`{Self}` is not a sqlwarden pipeline state",
        note = "the pipeline states are sealed: only sqlwarden defines them, so no stage can be added or skipped"
    )]
    pub trait Sealed {
        /// What has been proven on reaching this state.
        type Proof: Send;
    }

    impl Sealed for Unvalidated {
        type Proof = Claim;
    }
    impl Sealed for Resolved {
        type Proof = Resolution;
    }
    impl Sealed for ModeChecked {
        type Proof = Resolution;
    }
    impl Sealed for Authorized {
        type Proof = Resolution;
    }
    impl Sealed for Admitted {
        type Proof = Admission;
    }

    /// The session the raw call claims, if any.
    pub struct Claim(pub(crate) Option<Arc<SessionContext>>);

    /// A valid session and the tool it asked for.
    pub struct Resolution {
        pub(crate) session: Arc<SessionContext>,
        pub(crate) name: ToolName,
        pub(crate) tool: Arc<dyn ErasedTool>,
    }

    /// A resolution plus the quota reservation, held until the call ends, and the admission's
    /// audit records on their way to the sink (the tool runs only once they are written).
    pub struct Admission {
        pub(crate) resolution: Resolution,
        pub(crate) permit: QuotaPermit,
        pub(crate) recorded: Submitted,
    }
}
