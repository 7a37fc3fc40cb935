//! The tool registry: name → tool, each with the access class its type declares.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use thiserror::Error;

use super::{ErasedTool, Tool};
use crate::policy::{Access, MAX_TOOL_NAME_LEN, ToolName, ToolNameError};

/// Why a tool could not be registered.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum RegistryError {
    /// A tool with this name is already registered.
    #[error("a tool named `{0}` is already registered")]
    Duplicate(ToolName),
    /// The tool's name is not a valid tool name.
    #[error("cannot register tool `{name}`: {source}")]
    InvalidName {
        /// The name as given (truncated for display).
        name: String,
        /// What is wrong with it.
        source: ToolNameError,
    },
}

/// The registered tools. A name maps to exactly one tool; its access class comes from the
/// tool's type and cannot be overridden at registration.
#[derive(Default)]
pub struct ToolRegistry {
    tools: HashMap<Box<str>, Registered>,
}

struct Registered {
    name: ToolName,
    tool: Arc<dyn ErasedTool>,
}

/// What the registry tells about one tool.
#[derive(Clone, Copy)]
pub struct ToolInfo<'a> {
    /// The tool's name.
    pub name: &'a ToolName,
    /// Its description for the model.
    pub description: &'a str,
    /// Its declared access class.
    pub access: Access,
    tool: &'a dyn ErasedTool,
}

impl ToolInfo<'_> {
    /// The JSON Schema of its input.
    pub fn input_schema(&self) -> serde_json::Map<String, serde_json::Value> {
        self.tool.input_schema()
    }
}

impl fmt::Debug for ToolInfo<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ToolInfo").field("name", self.name).field("access", &self.access).finish_non_exhaustive()
    }
}

impl ToolRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers a tool under its own name. A name already taken is an error, never a
    /// replacement.
    pub fn register<T: Tool>(&mut self, tool: T) -> Result<(), RegistryError> {
        let name = ToolName::new(tool.name()).map_err(|source| RegistryError::InvalidName {
            name: tool.name().chars().take(MAX_TOOL_NAME_LEN).collect(),
            source,
        })?;
        if self.tools.contains_key(name.as_str()) {
            return Err(RegistryError::Duplicate(name));
        }
        let key: Box<str> = name.as_str().into();
        self.tools.insert(key, Registered { name, tool: Arc::new(tool) });
        Ok(())
    }

    /// Looks a tool up by name.
    pub fn get(&self, name: &str) -> Option<ToolInfo<'_>> {
        self.tools.get(name).map(Registered::info)
    }

    /// Every registered tool, sorted by name.
    pub fn iter(&self) -> impl Iterator<Item = ToolInfo<'_>> {
        let mut all: Vec<_> = self.tools.values().map(Registered::info).collect();
        all.sort_by(|a, b| a.name.as_str().cmp(b.name.as_str()));
        all.into_iter()
    }

    /// How many tools are registered.
    pub fn len(&self) -> usize {
        self.tools.len()
    }

    /// Whether no tool is registered.
    pub fn is_empty(&self) -> bool {
        self.tools.is_empty()
    }

    pub(crate) fn lookup(&self, name: &str) -> Option<(&ToolName, &Arc<dyn ErasedTool>)> {
        self.tools.get(name).map(|r| (&r.name, &r.tool))
    }
}

impl Registered {
    fn info(&self) -> ToolInfo<'_> {
        ToolInfo {
            name: &self.name,
            description: self.tool.description(),
            access: self.tool.access(),
            tool: &*self.tool,
        }
    }
}

impl fmt::Debug for ToolRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter().map(|t| (t.name.as_str(), t.access))).finish()
    }
}
