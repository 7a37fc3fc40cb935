// A write tool also declared as a read tool: its access class comes from WriteTool alone.
use sqlwarden::adapter::{Adapter, SqlValue};
use sqlwarden::tools::{WriteTool, WriteTx};
use sqlwarden::ToolError;

struct Tool(Box<dyn Adapter>);

impl WriteTool for Tool {
    type Input = String;
    type Output = ();
    const MAX_AFFECTED_ROWS: u64 = 1;

    fn name(&self) -> &str {
        "tool"
    }
    fn description(&self) -> &str {
        "writes"
    }
    fn database(&self) -> &dyn Adapter {
        &*self.0
    }
    async fn call(&self, tx: &mut WriteTx<'_>, input: String) -> Result<(), ToolError> {
        tx.execute("INSERT INTO notes (text) VALUES (?)", &[SqlValue::Text(input)]).await?;
        Ok(())
    }
}

impl sqlwarden::Tool for Tool {
    type Access = sqlwarden::Read;
    type Input = String;
    type Output = ();
    fn name(&self) -> &str {
        "tool"
    }
    fn description(&self) -> &str {
        "reads, it says"
    }
    async fn call(&self, _: sqlwarden::Evidence<'_, sqlwarden::Read>, _: String) -> Result<(), ToolError> {
        Ok(())
    }
}

fn main() {}
