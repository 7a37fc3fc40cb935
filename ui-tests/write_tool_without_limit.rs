// A write tool that does not declare how many rows it may change.
use sqlwarden::adapter::{Adapter, SqlValue};
use sqlwarden::tools::{WriteTool, WriteTx};
use sqlwarden::ToolError;

struct Tool(Box<dyn Adapter>);

impl WriteTool for Tool {
    type Input = String;
    type Output = ();

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

fn main() {}
