//! The JSON form of a TNDS tree: the [`MgmtTree`] structure with snake_case
//! field names (see docs/provisioning.md). Errors name line and column.

use super::tree::MgmtTree;
use super::{MoError, SyntaxProblem};

impl MgmtTree {
    /// Parses the JSON form and checks the TNDS rules.
    pub fn from_json(text: &str) -> Result<MgmtTree, MoError> {
        let tree: MgmtTree = serde_json::from_str(text).map_err(|e| MoError::Syntax {
            format: "JSON",
            line: e.line(),
            column: e.column(),
            problem: Box::new(SyntaxProblem::Json(e)),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_syntax_keeps_the_parser_error_without_its_position() {
        let text = "{\n  \"ver_dtd\": \"1.2\",\n  \"nodes\": [ { \"nam\": 1 } ]\n}";
        let e = match MgmtTree::from_json(text) {
            Err(e) => e,
            Ok(tree) => panic!("parsed: {tree:?}"),
        };
        let MoError::Syntax {
            format: "JSON",
            line: 3,
            problem,
            ..
        } = &e
        else {
            panic!("{e:?}");
        };
        let SyntaxProblem::Json(source) = problem.as_ref() else {
            panic!("{problem:?}");
        };
        assert!(
            source.to_string().contains(" at line 3 column "),
            "{source}"
        );
        assert_eq!(
            e.to_string(),
            "JSON line 3, column 20: unknown field `nam`, expected one of `name`, `path`, \
             `properties`, `value`, `children`"
        );
    }
}
