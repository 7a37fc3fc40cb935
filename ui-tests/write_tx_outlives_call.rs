// A write tool keeping its transaction past the call: it borrows the admitted invocation.
use sqlwarden::adapter::Adapter;
use sqlwarden::tools::{WriteTool, WriteTx};
use sqlwarden::ToolError;

thread_local! {
    static KEPT: std::cell::RefCell<Option<&'static mut WriteTx<'static>>> = const { std::cell::RefCell::new(None) };
}

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
        let _ = input;
        KEPT.with(|kept| kept.replace(Some(tx)));
        Ok(())
    }
}

fn main() {}
