//! Policy: who is calling, which tools exist, what the mode allows, who may call what, and how
//! much. Every decision here is a pure function of its inputs (the time is passed in), so each
//! rule can be tested at its exact edge; nothing here does I/O.

pub mod capability;
pub mod clock;
pub mod mode;
pub mod principal;
pub mod quota;
pub mod registry;
pub mod session;

pub use capability::{Authorizer, AuthzRequest, Capabilities, Decision, Grant, GrantError};
pub use clock::{Clock, ManualClock, SystemClock};
pub use mode::{Access, Mode};
pub use quota::{Admission, QuotaConfigError, QuotaDenied, QuotaEngine, QuotaKey, QuotaPermit, QuotaPolicy};
pub use registry::{RegistryError, ToolInfo, ToolName, ToolNameError, ToolRegistry};
pub use session::{SessionContext, SessionError, SessionId};
