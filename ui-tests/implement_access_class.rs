// Inventing an access class outside sqlwarden: a tool reads or writes, nothing else.
enum Admin {}

impl sqlwarden::AccessClass for Admin {
    const ACCESS: sqlwarden::policy::Access = sqlwarden::policy::Access::Read;
}

fn main() {}
