//! Tools: the [`Tool`] trait every tool implements, built-in or custom.
//!
//! A tool declares its access class in its type. A read tool implements [`Tool`] with
//! `type Access = Read`; a write tool implements [`WriteTool`], which makes it a `Tool` with
//! `type Access = Write` whose transaction sqlwarden opens, bounds and commits. The registry
//! reads the class from the type, so a write tool cannot be registered or run as a read tool,
//! and a handler receives [`Evidence`] of exactly its class.

pub mod declared;
pub mod reference;
mod registry;
mod write;

pub use registry::{RegistryError, ToolInfo, ToolRegistry};
pub use write::{FixedSql, WriteTool, WriteTx};

use std::error::Error as StdError;
use std::fmt;
use std::future::Future;

use futures_util::future::BoxFuture;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::adapter::AdapterError;
use crate::denial::{Denial, DenialCode};
use crate::evidence::{AccessClass, AdmittedCall, Evidence};
use crate::policy::SessionContext;
use crate::policy::{Access, Egress};

/// A tool callable through the boundary.
///
/// ```
/// use sqlwarden::{Evidence, Read, Tool, ToolError};
///
/// struct Echo;
///
/// #[derive(serde::Deserialize)]
/// #[serde(deny_unknown_fields)]
/// struct EchoInput { text: String }
///
/// impl Tool for Echo {
///     type Access = Read;
///     type Input = EchoInput;
///     type Output = String;
///
///     fn name(&self) -> &str { "echo" }
///     fn description(&self) -> &str { "Repeats its input." }
///
///     async fn call(&self, _evidence: Evidence<'_, Read>, input: EchoInput) -> Result<String, ToolError> {
///         Ok(input.text)
///     }
/// }
/// ```
pub trait Tool: Send + Sync + 'static {
    /// [`Read`](crate::Read) or [`Write`](crate::Write).
    type Access: AccessClass;
    /// The input, deserialized from the call's JSON arguments. Use
    /// `#[serde(deny_unknown_fields)]` so that unknown fields are refused.
    type Input: DeserializeOwned + Send;
    /// The output, serialized to JSON for the caller.
    type Output: Serialize + Send;

    /// The tool's name (1 to 128 characters of `A-Z a-z 0-9 _ - .`).
    fn name(&self) -> &str;

    /// What the tool does, for the model.
    fn description(&self) -> &str;

    /// The JSON Schema of the input, shown to MCP clients. It should state the input's bounds:
    /// [`input_schema_of`] derives it from the input type. The default accepts any object (the
    /// input type still decides what is valid).
    fn input_schema(&self) -> serde_json::Map<String, Value> {
        any_object()
    }

    /// What a call with these arguments costs against `[quotas] cost_per_minute`: 1 unless the
    /// tool weighs its input. The arguments are not validated yet: read them leniently. A cost
    /// of 0 counts as 1.
    fn cost(&self, args: &Value) -> u32 {
        let _ = args;
        1
    }

    /// For a tool whose calls return rows from the database, the most a call with these
    /// arguments could return. Such a call is charged against the egress budgets
    /// (`[quotas] rows_per_hour`, `bytes_per_hour`) and may return no more than what is left
    /// of them ([`Evidence::allowance`]). `None`, the default: the tool returns no rows.
    fn egress(&self, args: &Value) -> Option<Egress> {
        let _ = args;
        None
    }

    /// Runs the tool. Only the boundary can call this: `evidence` cannot be made anywhere else.
    fn call(
        &self,
        evidence: Evidence<'_, Self::Access>,
        input: Self::Input,
    ) -> impl Future<Output = Result<Self::Output, ToolError>> + Send;

    /// The output as the JSON text the caller gets: [`ToolOutput::of`] the output, unless the
    /// tool has a faster way to the same text.
    fn output_json(output: Self::Output) -> Result<ToolOutput, ToolError> {
        ToolOutput::of(&output)
    }
}

/// What a tool returned, as the JSON text the caller gets. It is written once, when the tool
/// returns, and passes through the boundary and the transport as it is.
///
/// ```
/// let output = sqlwarden::ToolOutput::of(&serde_json::json!({"answer": 42})).unwrap();
/// assert_eq!(output.as_json(), r#"{"answer":42}"#);
/// assert_eq!(output.to_value().unwrap()["answer"], 42);
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct ToolOutput(String, Carries);

/// Whether an output holds what the database returned: rows, which are untrusted input to a
/// model (a value may read "ignore previous instructions…").
#[derive(Clone, Copy, PartialEq, Eq)]
enum Carries {
    Ours,
    Rows,
}

impl ToolOutput {
    /// `output`, serialized.
    pub fn of<T: Serialize + ?Sized>(output: &T) -> Result<ToolOutput, ToolError> {
        serde_json::to_string(output).map(|text| ToolOutput(text, Carries::Ours)).map_err(ToolError::internal)
    }

    /// JSON text this crate wrote itself, value by value, with the writers of [`crate::json`]
    /// (each tested to write what `serde_json` writes for the same value). Debug builds, and so
    /// every test, check that the whole is one JSON value.
    pub(crate) fn written(text: String) -> ToolOutput {
        debug_assert!(is_one_json_value(&text), "a writer made text that is not one JSON value");
        ToolOutput(text, Carries::Ours)
    }

    /// Marks the output as holding rows the database returned: transports frame its text
    /// content as untrusted data (`[output] untrusted_framing`). A tool that returns rows
    /// marks its output so.
    #[must_use]
    pub fn with_rows(mut self) -> ToolOutput {
        self.1 = Carries::Rows;
        self
    }

    /// Whether the output holds rows the database returned (see [`ToolOutput::with_rows`]).
    pub fn carries_rows(&self) -> bool {
        self.1 == Carries::Rows
    }

    /// The output as compact JSON text.
    pub fn as_json(&self) -> &str {
        &self.0
    }

    /// The output as compact JSON text.
    pub fn into_json(self) -> String {
        self.0
    }

    /// The output as a JSON value. (This parses the text: it fails only on values nested
    /// deeper than `serde_json` reads, 128 levels.)
    pub fn to_value(&self) -> Result<Value, serde_json::Error> {
        serde_json::from_str(&self.0)
    }

    /// Whether the output is a JSON object.
    pub fn is_object(&self) -> bool {
        // Compact JSON text starts with the value's own first character.
        self.0.starts_with('{')
    }
}

/// Whether `text` is one JSON value. Past the depth `serde_json` reads (128), which a
/// database's own JSON may reach, the rest is not checked.
fn is_one_json_value(text: &str) -> bool {
    match serde_json::from_str::<serde::de::IgnoredAny>(text) {
        Ok(_) => true,
        Err(error) => error.to_string().starts_with("recursion limit exceeded"),
    }
}

/// Shows the output's size, never what it holds.
impl fmt::Debug for ToolOutput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ToolOutput({} bytes)", self.0.len())
    }
}

/// The JSON Schema of `T`, for [`Tool::input_schema`] and [`WriteTool::input_schema`]: derive
/// [`schemars::JsonSchema`] on the input type and its bounds (`#[schemars(length(max = 100))]`,
/// `#[schemars(range(min = 1))]`) and `#[serde(deny_unknown_fields)]` show in the schema, so
/// the schema the model sees and the type that decides cannot drift apart.
///
/// ```
/// #[derive(serde::Deserialize, schemars::JsonSchema)]
/// #[serde(deny_unknown_fields)]
/// struct Input {
///     #[schemars(length(min = 1, max = 100))]
///     name: String,
/// }
///
/// let schema = sqlwarden::tools::input_schema_of::<Input>();
/// assert_eq!(schema["type"], "object");
/// assert_eq!(schema["additionalProperties"], false);
/// assert_eq!(schema["properties"]["name"]["maxLength"], 100);
/// ```
pub fn input_schema_of<T: schemars::JsonSchema>() -> serde_json::Map<String, Value> {
    let generator = schemars::generate::SchemaSettings::draft2020_12().into_generator();
    match generator.into_root_schema_for::<T>().to_value() {
        Value::Object(mut schema) => {
            schema.remove("$schema");
            schema
        }
        _ => any_object(),
    }
}

/// The schema of any JSON object.
fn any_object() -> serde_json::Map<String, Value> {
    let mut schema = serde_json::Map::new();
    schema.insert("type".into(), Value::String("object".into()));
    schema
}

/// A tool's failure: a [`Denial`] meant for the caller, or an internal fault that is logged in
/// full and answered generically.
pub struct ToolError(Repr);

enum Repr {
    Denied(Denial),
    Internal(Box<dyn StdError + Send + Sync>),
    /// A database failure: its denial for the caller, its cause for the operator's log.
    Adapter(AdapterError),
}

impl ToolError {
    /// The call is refused with this denial, shown to the caller as it is.
    pub fn denied(denial: Denial) -> Self {
        ToolError(Repr::Denied(denial))
    }

    /// An internal fault: logged in full, answered with [`DenialCode::Internal`].
    pub fn internal(error: impl Into<Box<dyn StdError + Send + Sync>>) -> Self {
        ToolError(Repr::Internal(error.into()))
    }

    /// What the caller is told. Internal faults and database failures are logged here,
    /// once, with the session and the tool (a database failure's cause is kept free of
    /// values by the adapter: an SQLSTATE or error number, a connection's or TLS's reason).
    pub(crate) fn into_denial(self, tool: &str, session: &SessionContext) -> Denial {
        match self.0 {
            Repr::Denied(denial) => denial,
            Repr::Adapter(error) => {
                let denial = error.denial();
                tracing::warn!(
                    tool,
                    session = %session.id(),
                    code = denial.code().as_str(),
                    error = %DisplayChain(&error),
                    "the database call failed"
                );
                denial
            }
            Repr::Internal(error) => {
                tracing::error!(tool, error = %DisplayChain(&*error), "tool failed");
                Denial::internal()
            }
        }
    }
}

impl From<Denial> for ToolError {
    fn from(denial: Denial) -> Self {
        ToolError::denied(denial)
    }
}

impl From<AdapterError> for ToolError {
    fn from(error: AdapterError) -> Self {
        ToolError(Repr::Adapter(error))
    }
}

impl fmt::Debug for ToolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Repr::Denied(denial) => f.debug_tuple("ToolError::Denied").field(denial).finish(),
            Repr::Internal(error) => f.debug_tuple("ToolError::Internal").field(error).finish(),
            Repr::Adapter(error) => f.debug_tuple("ToolError::Adapter").field(error).finish(),
        }
    }
}

/// Displays an error with its chain of sources.
struct DisplayChain<'a>(&'a (dyn StdError + 'static));

impl fmt::Display for DisplayChain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(error) = source {
            write!(f, ": {error}")?;
            source = error.source();
        }
        Ok(())
    }
}

/// A tool with its types erased, as the registry holds it.
pub(crate) trait ErasedTool: Send + Sync {
    fn description(&self) -> &str;
    fn input_schema(&self) -> serde_json::Map<String, Value>;
    fn access(&self) -> Access;
    fn cost(&self, args: &Value) -> u32;
    fn egress(&self, args: &Value) -> Option<Egress>;
    fn call<'a>(&'a self, call: &'a AdmittedCall, args: Value) -> BoxFuture<'a, Result<ToolOutput, ToolError>>;
}

impl<T: Tool> ErasedTool for T {
    fn description(&self) -> &str {
        Tool::description(self)
    }

    fn input_schema(&self) -> serde_json::Map<String, Value> {
        Tool::input_schema(self)
    }

    fn access(&self) -> Access {
        T::Access::ACCESS
    }

    fn cost(&self, args: &Value) -> u32 {
        Tool::cost(self, args).max(1)
    }

    fn egress(&self, args: &Value) -> Option<Egress> {
        Tool::egress(self, args)
    }

    fn call<'a>(&'a self, call: &'a AdmittedCall, args: Value) -> BoxFuture<'a, Result<ToolOutput, ToolError>> {
        Box::pin(async move {
            let evidence = Evidence::<T::Access>::new(call)
                .ok_or_else(|| ToolError::internal("admitted evidence does not match the tool's access class"))?;
            let input: T::Input = serde_json::from_value(args)
                .map_err(|error| Denial::new(DenialCode::InvalidInput, format!("invalid arguments: {error}")))?;
            let output = Tool::call(self, evidence, input).await?;
            T::output_json(output)
        })
    }
}
