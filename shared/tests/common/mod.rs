pub mod parser_invariants;
