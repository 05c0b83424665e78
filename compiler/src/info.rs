//! `seqc info`: a graph's interface (dims, params, inputs, outputs) as JSON-serialisable data.

use crate::ir::Graph;
use serde::Serialize;

#[derive(Serialize)]
pub struct TensorInfo {
    pub name: String,
    pub dtype: String,
    /// Dims as canonical expressions, e.g. `["B", "T", "64"]`.
    pub shape: Vec<String>,
}

#[derive(Serialize)]
pub struct Info {
    pub dims: Vec<String>,
    pub params: Vec<TensorInfo>,
    pub inputs: Vec<TensorInfo>,
    pub outputs: Vec<TensorInfo>,
}

fn tensor(g: &Graph, name: &str, id: crate::ir::NodeId) -> TensorInfo {
    let t = g.tensor_ty(id);
    TensorInfo {
        name: name.to_string(),
        dtype: t.dtype.to_string(),
        shape: t.shape.iter().map(|d| d.to_string()).collect(),
    }
}

pub fn info(g: &Graph) -> Info {
    Info {
        dims: g.dims.clone(),
        params: g.params().map(|(n, id)| tensor(g, n, id)).collect(),
        inputs: g.inputs().map(|(n, id)| tensor(g, n, id)).collect(),
        outputs: g.outputs.iter().map(|(n, id)| tensor(g, n, *id)).collect(),
    }
}
