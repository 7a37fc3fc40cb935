// A write tool building its SQL from input: statements are `&'static str`, fixed in the code.
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
        let statement = format!("DELETE FROM {input}");
        tx.execute(&statement, &[SqlValue::Null]).await?;
        Ok(())
    }
}

fn main() {}
