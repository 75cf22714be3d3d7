//! Elementwise fusion: maximal trees of elementwise ops (unary, binary, compare, select,
//! cast) whose intermediate results are read only inside the tree (by one consumer, or by
//! several of the same tree, computed once into a register) become one `Op::Fused` node, run
//! by the backend in a single pass over memory. Broadcasts feeding the tree are absorbed
//! (the kernel broadcasts its inputs by strides), and rank-0 `Full` scalars become program
//! constants. A tree of one op is left alone: fusing it saves nothing.

use super::{PassStats, Rewriter};
use crate::{Error, Graph, NodeId, Op, Result, Value};
use luoshu_backend::ops::{ElementwiseProgram, FusedInstr};
use std::collections::HashMap;

/// Elementwise fusion (see the module docs); `rewrites` counts the fused nodes made.
pub fn fuse_elementwise(graph: &Graph) -> Result<(Graph, PassStats)> {
    let root_of = group_roots(graph);
    let mut size: HashMap<NodeId, usize> = HashMap::new();
    for r in root_of.iter().flatten() {
        *size.entry(*r).or_default() += 1;
    }
    let mut rw = Rewriter::new(graph);
    let mut fused = 0;
    for id in graph.ids() {
        let Some(root) = root_of[id.index()] else {
            rw.copy_node(id)?;
            continue;
        };
        if size[&root] < 2 {
            rw.copy_node(id)?;
        } else if root == id {
            let (program, inputs) = build_program(graph, &root_of, id)?;
            let new = rw.add_mapped(Op::Fused(program), &inputs)?;
            rw.replace(id.into(), new.into());
            fused += 1;
        }
        // Other members are computed inside their root's program.
    }
    let out = rw.finish()?;
    let stats = PassStats::new("fuse_elementwise", graph, &out, fused);
    Ok((out, stats))
}

/// For each elementwise node, the root of the fusion tree it belongs to: a node joins its
/// consumers' tree when all of them are in that one tree and it is no graph output.
fn group_roots(graph: &Graph) -> Vec<Option<NodeId>> {
    let mut consumers: Vec<Vec<NodeId>> = vec![Vec::new(); graph.len()];
    for id in graph.ids() {
        for v in &graph.node(id).inputs {
            let c = &mut consumers[v.node.index()];
            if c.last() != Some(&id) {
                c.push(id);
            }
        }
    }
    let mut is_output = vec![false; graph.len()];
    for v in graph.outputs() {
        is_output[v.node.index()] = true;
    }
    let mut root_of: Vec<Option<NodeId>> = vec![None; graph.len()];
    for id in graph.ids().collect::<Vec<_>>().into_iter().rev() {
        if !graph.node(id).op.is_elementwise() {
            continue;
        }
        let readers = &consumers[id.index()];
        let first = readers.first().and_then(|c| root_of[c.index()]);
        let same_tree = readers.iter().all(|c| root_of[c.index()] == first);
        let joined = if is_output[id.index()] || !same_tree {
            None
        } else {
            first
        };
        root_of[id.index()] = Some(joined.unwrap_or(id));
    }
    root_of
}

/// The program of the tree rooted at `root` and the (old) values it loads. Broadcasts are
/// absorbed only if the loads' broadcast shape is still the root's shape; otherwise the
/// broadcast nodes stay and are loaded as they are.
fn build_program(
    graph: &Graph,
    root_of: &[Option<NodeId>],
    root: NodeId,
) -> Result<(ElementwiseProgram, Vec<Value>)> {
    let want = &graph.node(root).outputs[0];
    for absorb in [true, false] {
        let mut b = ProgramBuilder {
            graph,
            root_of,
            root,
            absorb_broadcasts: absorb,
            program: ElementwiseProgram {
                inputs: Vec::new(),
                instrs: Vec::new(),
                output: 0,
            },
            loads: Vec::new(),
            regs: HashMap::new(),
        };
        b.program.output = b.emit(root.into())?;
        let types: Vec<_> = b.loads.iter().map(|v| graph.value_type(*v)).collect();
        let fused = crate::infer::infer(&Op::Fused(b.program.clone()), &types);
        if fused.is_ok_and(|t| t[0] == *want) {
            return Ok((b.program, b.loads));
        }
    }
    Err(Error::Node {
        node: root,
        op: graph.node(root).op.name(),
        detail: "elementwise fusion built a program of the wrong type (a bug in the pass)".into(),
    })
}

struct ProgramBuilder<'a> {
    graph: &'a Graph,
    root_of: &'a [Option<NodeId>],
    root: NodeId,
    absorb_broadcasts: bool,
    program: ElementwiseProgram,
    loads: Vec<Value>,
    /// Register of each value already emitted (a value read twice is computed once).
    regs: HashMap<Value, usize>,
}

impl ProgramBuilder<'_> {
    fn push(&mut self, instr: FusedInstr) -> usize {
        self.program.instrs.push(instr);
        self.program.instrs.len() - 1
    }

    /// Emit the instructions computing `v` and return its register.
    fn emit(&mut self, v: Value) -> Result<usize> {
        if let Some(&r) = self.regs.get(&v) {
            return Ok(r);
        }
        let node = self.graph.node(v.node);
        let member = self.root_of[v.node.index()] == Some(self.root);
        let r = match &node.op {
            op if member => {
                let ins = node.inputs.iter().map(|x| self.emit(*x));
                let ins = ins.collect::<Result<Vec<_>>>()?;
                let instr = elementwise_instr(op, &ins)?;
                self.push(instr)
            }
            Op::Full {
                value,
                shape,
                dtype,
            } if shape.is_empty() => self.push(FusedInstr::constant(value.get(), *dtype)),
            Op::Broadcast { .. } if self.absorb_broadcasts => self.load(node.inputs[0]),
            _ => self.load(v),
        };
        self.regs.insert(v, r);
        Ok(r)
    }

    fn load(&mut self, v: Value) -> usize {
        let k = match self.loads.iter().position(|x| *x == v) {
            Some(k) => k,
            None => {
                self.loads.push(v);
                self.program.inputs.push(self.graph.value_type(v).dtype);
                self.loads.len() - 1
            }
        };
        self.push(FusedInstr::Load(k))
    }
}

/// The instruction computing the elementwise `op` from the registers `args`.
pub(super) fn elementwise_instr(op: &Op, args: &[usize]) -> Result<FusedInstr> {
    Ok(match op {
        Op::Unary(u) => FusedInstr::Unary(*u, args[0]),
        Op::Binary(b) => FusedInstr::Binary(*b, args[0], args[1]),
        Op::Compare(c) => FusedInstr::Compare(*c, args[0], args[1]),
        Op::Select => FusedInstr::Select(args[0], args[1], args[2]),
        Op::Cast(dtype) => FusedInstr::Cast(args[0], *dtype),
        other => {
            return Err(Error::Invalid {
                detail: format!("{} is not elementwise", other.name()),
            })
        }
    })
}
