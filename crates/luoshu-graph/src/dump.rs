//! Human-readable dumps of a graph: text (one line per node) and Graphviz, and the
//! `LUOSHU_DUMP=dir` hook that writes both after every stage of the compiler.

use crate::{Error, Graph, NodeId, Result, TensorType};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

/// The environment variable naming the dump directory.
pub const DUMP_ENV: &str = "LUOSHU_DUMP";

/// Numbers the dumps of this process, so files sort in the order the stages ran.
static DUMP_COUNTER: AtomicUsize = AtomicUsize::new(0);

fn types(outputs: &[TensorType]) -> String {
    match outputs {
        [one] => one.to_string(),
        many => {
            let list: Vec<String> = many.iter().map(ToString::to_string).collect();
            format!("({})", list.join(", "))
        }
    }
}

fn escape(label: &str) -> String {
    label.replace('\\', "\\\\").replace('"', "\\\"")
}

impl Graph {
    /// One line per node, `%7 = matmul(%3, %5) : f32[batch·seq, 256]`, then the outputs.
    pub fn to_text(&self) -> String {
        let mut text = String::new();
        for (id, node) in self.ids().zip(self.nodes()) {
            let inputs: Vec<String> = node.inputs.iter().map(ToString::to_string).collect();
            let call = if node.op.is_leaf() {
                node.op.name()
            } else {
                format!("{}({})", node.op.name(), inputs.join(", "))
            };
            // Writing to a String cannot fail.
            let _ = writeln!(text, "{id} = {call} : {}", types(&node.outputs));
        }
        let outputs: Vec<String> = self.outputs().iter().map(ToString::to_string).collect();
        let _ = writeln!(text, "outputs: {}", outputs.join(", "));
        text
    }

    /// A Graphviz digraph: a box per node labelled with its op and types, an edge per input
    /// (labelled with the output index for multi-output producers), outputs double-framed.
    pub fn to_dot(&self) -> String {
        let is_output = |id: NodeId| self.outputs().iter().any(|v| v.node == id);
        let mut dot =
            String::from("digraph luoshu {\n  node [shape=box, fontname=\"monospace\"];\n");
        for (id, node) in self.ids().zip(self.nodes()) {
            let label = escape(&format!(
                "{id} {}\n{}",
                node.op.name(),
                types(&node.outputs)
            ));
            let style = if node.op.is_leaf() {
                ", style=rounded"
            } else if is_output(id) {
                ", peripheries=2"
            } else {
                ""
            };
            let _ = writeln!(dot, "  n{} [label=\"{label}\"{style}];", id.0);
            for v in &node.inputs {
                let edge_label = match self.node(v.node).outputs.len() {
                    1 => String::new(),
                    _ => format!(" [label=\"{}\"]", v.output),
                };
                let _ = writeln!(dot, "  n{} -> n{}{edge_label};", v.node.0, id.0);
            }
        }
        dot.push_str("}\n");
        dot
    }
}

/// Write `graph` as `<dir>/<NN>-<stage>.txt` and `.dot` (creating `dir`); returns both paths.
pub fn dump_to(dir: &Path, graph: &Graph, stage: &str) -> Result<[PathBuf; 2]> {
    let io_error = |path: &Path, e: std::io::Error| Error::Invalid {
        detail: format!("cannot write graph dump {}: {e}", path.display()),
    };
    std::fs::create_dir_all(dir).map_err(|e| io_error(dir, e))?;
    let n = DUMP_COUNTER.fetch_add(1, Ordering::Relaxed);
    let base = format!("{n:02}-{stage}");
    let text = dir.join(format!("{base}.txt"));
    let dot = dir.join(format!("{base}.dot"));
    std::fs::write(&text, graph.to_text()).map_err(|e| io_error(&text, e))?;
    std::fs::write(&dot, graph.to_dot()).map_err(|e| io_error(&dot, e))?;
    Ok([text, dot])
}

/// [`dump_to`] the directory named by `LUOSHU_DUMP`, if it is set and not empty.
pub fn dump_if_enabled(graph: &Graph, stage: &str) -> Result<Option<[PathBuf; 2]>> {
    match std::env::var_os(DUMP_ENV) {
        Some(dir) if !dir.is_empty() => dump_to(Path::new(&dir), graph, stage).map(Some),
        _ => Ok(None),
    }
}
