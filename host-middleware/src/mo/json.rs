//! The JSON form of a TNDS tree: the [`MgmtTree`] structure with snake_case
//! field names (see docs/provisioning.md). Errors name line and column.

use super::tree::MgmtTree;
use super::MoError;

impl MgmtTree {
    /// Parses the JSON form and checks the TNDS rules.
    pub fn from_json(text: &str) -> Result<MgmtTree, MoError> {
        let tree: MgmtTree = serde_json::from_str(text).map_err(|e| MoError::Syntax {
            format: "JSON",
            line: e.line(),
            column: e.column(),
            message: {
                let text = e.to_string();
                match text.rsplit_once(" at line ") {
                    Some((head, _)) => head.to_string(),
                    None => text,
                }
            },
        })?;
        tree.validate()?;
        Ok(tree)
    }

    /// The JSON form, indented.
    pub fn to_json(&self) -> String {
        // A tree of strings, options and vectors always serialises.
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// Parses TNDS XML or JSON, chosen by the first non-blank character (`<` or `{`).
    pub fn parse_any(text: &str) -> Result<MgmtTree, MoError> {
        match text.trim_start().chars().next() {
            Some('{') => MgmtTree::from_json(text),
            _ => MgmtTree::from_tnds(text),
        }
    }
}
