// A write tool committing by itself: only sqlwarden commits, once the tool has returned Ok.
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
        tx.commit().await?;
        Ok(())
    }
}

fn main() {}
