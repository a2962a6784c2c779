//! The subset of the ONNX protobuf messages the harness reads and writes,
//! derived with prost (field numbers from `onnx.proto`). Fields the harness
//! does not use are left out; prost skips them when decoding.

#![allow(missing_docs)]

/// `TensorProto.DataType.FLOAT`.
pub const FLOAT: i32 = 1;
/// `TensorProto.DataType.INT32`.
pub const INT32: i32 = 6;
/// `TensorProto.DataType.FLOAT16`.
pub const FLOAT16: i32 = 10;
/// `TensorProto.DataType.INT64`: shape operands.
pub const INT64: i32 = 7;
/// `TensorProto.DataType.DOUBLE`.
pub const DOUBLE: i32 = 11;

/// `AttributeProto.AttributeType.INT`.
pub const ATTR_INT: i32 = 2;
/// `AttributeProto.AttributeType.STRING`.
pub const ATTR_STRING: i32 = 3;
/// `AttributeProto.AttributeType.INTS`.
pub const ATTR_INTS: i32 = 7;

impl TensorProto {
    /// The values of a FLOAT tensor stored in the message (`raw_data` or
    /// `float_data`); `None` for another type or external data.
    pub fn f32_values(&self) -> Option<Vec<f32>> {
        if self.data_type != Some(FLOAT) || !self.external_data.is_empty() {
            return None;
        }
        Some(match &self.raw_data {
            Some(raw) => raw
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
            None => self.float_data.clone(),
        })
    }
}

/// The name ONNX gives an element type, for messages.
pub fn data_type_name(t: i32) -> &'static str {
    match t {
        0 => "UNDEFINED",
        1 => "FLOAT",
        2 => "UINT8",
        3 => "INT8",
        4 => "UINT16",
        5 => "INT16",
        6 => "INT32",
        7 => "INT64",
        8 => "STRING",
        9 => "BOOL",
        10 => "FLOAT16",
        11 => "DOUBLE",
        12 => "UINT32",
        13 => "UINT64",
        14 => "COMPLEX64",
        15 => "COMPLEX128",
        16 => "BFLOAT16",
        _ => "an unknown type",
    }
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ModelProto {
    #[prost(int64, optional, tag = "1")]
    pub ir_version: Option<i64>,
    #[prost(string, optional, tag = "2")]
    pub producer_name: Option<String>,
    #[prost(string, optional, tag = "3")]
    pub producer_version: Option<String>,
    #[prost(message, optional, tag = "7")]
    pub graph: Option<GraphProto>,
    #[prost(message, repeated, tag = "8")]
    pub opset_import: Vec<OperatorSetIdProto>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct OperatorSetIdProto {
    #[prost(string, optional, tag = "1")]
    pub domain: Option<String>,
    #[prost(int64, optional, tag = "2")]
    pub version: Option<i64>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct GraphProto {
    #[prost(message, repeated, tag = "1")]
    pub node: Vec<NodeProto>,
    #[prost(string, optional, tag = "2")]
    pub name: Option<String>,
    #[prost(message, repeated, tag = "5")]
    pub initializer: Vec<TensorProto>,
    #[prost(message, repeated, tag = "11")]
    pub input: Vec<ValueInfoProto>,
    #[prost(message, repeated, tag = "12")]
    pub output: Vec<ValueInfoProto>,
    #[prost(message, repeated, tag = "15")]
    pub sparse_initializer: Vec<SparseTensorProto>,
}

/// Only its presence matters: sparse initializers are rejected.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SparseTensorProto {}

#[derive(Clone, PartialEq, prost::Message)]
pub struct NodeProto {
    #[prost(string, repeated, tag = "1")]
    pub input: Vec<String>,
    #[prost(string, repeated, tag = "2")]
    pub output: Vec<String>,
    #[prost(string, optional, tag = "3")]
    pub name: Option<String>,
    #[prost(string, optional, tag = "4")]
    pub op_type: Option<String>,
    #[prost(message, repeated, tag = "5")]
    pub attribute: Vec<AttributeProto>,
    #[prost(string, optional, tag = "7")]
    pub domain: Option<String>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct AttributeProto {
    #[prost(string, optional, tag = "1")]
    pub name: Option<String>,
    #[prost(float, optional, tag = "2")]
    pub f: Option<f32>,
    #[prost(int64, optional, tag = "3")]
    pub i: Option<i64>,
    #[prost(bytes = "vec", optional, tag = "4")]
    pub s: Option<Vec<u8>>,
    #[prost(message, optional, tag = "5")]
    pub t: Option<TensorProto>,
    #[prost(float, repeated, packed = "false", tag = "7")]
    pub floats: Vec<f32>,
    #[prost(int64, repeated, packed = "false", tag = "8")]
    pub ints: Vec<i64>,
    #[prost(int32, optional, tag = "20")]
    pub r#type: Option<i32>,
    #[prost(string, optional, tag = "21")]
    pub ref_attr_name: Option<String>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct TensorProto {
    #[prost(int64, repeated, packed = "false", tag = "1")]
    pub dims: Vec<i64>,
    #[prost(int32, optional, tag = "2")]
    pub data_type: Option<i32>,
    #[prost(float, repeated, tag = "4")]
    pub float_data: Vec<f32>,
    #[prost(int32, repeated, tag = "5")]
    pub int32_data: Vec<i32>,
    #[prost(int64, repeated, tag = "7")]
    pub int64_data: Vec<i64>,
    #[prost(string, optional, tag = "8")]
    pub name: Option<String>,
    #[prost(bytes = "vec", optional, tag = "9")]
    pub raw_data: Option<Vec<u8>>,
    #[prost(double, repeated, tag = "10")]
    pub double_data: Vec<f64>,
    #[prost(message, repeated, tag = "13")]
    pub external_data: Vec<StringStringEntryProto>,
    #[prost(int32, optional, tag = "14")]
    pub data_location: Option<i32>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct StringStringEntryProto {
    #[prost(string, optional, tag = "1")]
    pub key: Option<String>,
    #[prost(string, optional, tag = "2")]
    pub value: Option<String>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ValueInfoProto {
    #[prost(string, optional, tag = "1")]
    pub name: Option<String>,
    #[prost(message, optional, tag = "2")]
    pub r#type: Option<TypeProto>,
}

/// `TypeProto`; only its `tensor_type` arm of the `value` oneof is read.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TypeProto {
    #[prost(message, optional, tag = "1")]
    pub tensor_type: Option<TypeProtoTensor>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct TypeProtoTensor {
    #[prost(int32, optional, tag = "1")]
    pub elem_type: Option<i32>,
    #[prost(message, optional, tag = "2")]
    pub shape: Option<TensorShapeProto>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct TensorShapeProto {
    #[prost(message, repeated, tag = "1")]
    pub dim: Vec<Dimension>,
}

/// `TensorShapeProto.Dimension`; its `value` oneof as two optional fields.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Dimension {
    #[prost(int64, optional, tag = "1")]
    pub dim_value: Option<i64>,
    #[prost(string, optional, tag = "2")]
    pub dim_param: Option<String>,
}

/// One field of a protobuf message: its number, wire type, the whole
/// field's bytes (key included) and, for a length-delimited field, its
/// payload.
struct Field<'a> {
    number: u64,
    whole: &'a [u8],
    payload: Option<&'a [u8]>,
}

/// The fields of a protobuf message, in order, borrowed from `bytes`.
fn fields(mut bytes: &[u8]) -> Result<Vec<Field<'_>>, String> {
    use prost::encoding::decode_varint;
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let start = bytes;
        let key = decode_varint(&mut bytes).map_err(|e| e.to_string())?;
        let payload = match key & 7 {
            0 => {
                decode_varint(&mut bytes).map_err(|e| e.to_string())?;
                None
            }
            1 | 5 => {
                let n = if key & 7 == 1 { 8 } else { 4 };
                bytes = bytes
                    .get(n..)
                    .ok_or("a fixed-width field runs past the end")?;
                None
            }
            2 => {
                let len = decode_varint(&mut bytes).map_err(|e| e.to_string())? as usize;
                let p = bytes.get(..len).ok_or("a field runs past the end")?;
                bytes = &bytes[len..];
                Some(p)
            }
            w => return Err(format!("wire type {w} is not supported")),
        };
        let used = start.len() - bytes.len();
        out.push(Field {
            number: key >> 3,
            whole: &start[..used],
            payload,
        });
    }
    Ok(out)
}

fn put_message(out: &mut Vec<u8>, number: u64, payload: &[u8]) {
    prost::encoding::encode_varint((number << 3) | 2, out);
    prost::encoding::encode_varint(payload.len() as u64, out);
    out.extend_from_slice(payload);
}

/// The model `bytes` with the values of initializers replaced: `values`
/// gives an initializer's new f32 values by name, or `None` to keep it. A
/// replaced initializer is written as FLOAT `raw_data` with its name and
/// dims; every other byte of the model (ops, attributes, opsets, metadata,
/// fields this crate does not know) is kept as it was, so any runtime reads
/// the same model with other weights. The graph moves to the end of the
/// model and the initializers to the end of the graph (protobuf readers do
/// not depend on field order).
///
/// # Errors
/// A message for bytes that are not a protobuf model with a graph.
pub fn replace_initializers<'v>(
    bytes: &[u8],
    values: &dyn Fn(&str) -> Option<&'v [f32]>,
) -> Result<Vec<u8>, String> {
    use prost::Message;
    let model = fields(bytes)?;
    let mut out = Vec::with_capacity(bytes.len());
    let mut graph = None;
    for f in &model {
        match (f.number, f.payload) {
            (7, Some(g)) => graph = Some(g),
            _ => out.extend_from_slice(f.whole),
        }
    }
    let graph = graph.ok_or("the model has no graph")?;
    let mut g_out = Vec::with_capacity(graph.len());
    let mut inits = Vec::new();
    for f in fields(graph)? {
        match (f.number, f.payload) {
            (5, Some(t)) => inits.push((f.whole, t)),
            _ => g_out.extend_from_slice(f.whole),
        }
    }
    for (whole, t) in inits {
        let proto = TensorProto::decode(t).map_err(|e| e.to_string())?;
        match values(proto.name.as_deref().unwrap_or_default()) {
            None => g_out.extend_from_slice(whole),
            Some(v) => {
                let replaced = TensorProto {
                    dims: proto.dims,
                    data_type: Some(FLOAT),
                    name: proto.name,
                    raw_data: Some(v.iter().flat_map(|x| x.to_le_bytes()).collect()),
                    ..TensorProto::default()
                };
                put_message(&mut g_out, 5, &replaced.encode_to_vec());
            }
        }
    }
    put_message(&mut out, 7, &g_out);
    Ok(out)
}
