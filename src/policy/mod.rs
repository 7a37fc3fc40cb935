//! Policy: who is calling, what a tool may be named, what the mode allows, who may call what, and how
//! much. Every decision here is a pure function of its inputs (the time is passed in), so each
//! rule can be tested at its exact edge; nothing here does I/O.

pub mod capability;
pub mod clock;
pub mod mode;
pub mod principal;
pub mod quota;
pub mod session;
pub mod tool_name;

pub use capability::{Authorizer, AuthzRequest, Capabilities, Decision, Grant, GrantError};
pub use clock::{Clock, ManualClock, SystemClock};
pub use mode::{Access, Mode};
pub use quota::{
    Admission, AdmitFuture, Allowance, Egress, Gcra, GcraDenied, QuotaConfigError, QuotaDenied, QuotaEngine, QuotaKey,
    QuotaPermit, QuotaPolicy, QuotaRequest, Release, budget_grant,
};
pub use session::{SessionContext, SessionError, SessionId};
pub use tool_name::{MAX_TOOL_NAME_LEN, ToolName, ToolNameError};
