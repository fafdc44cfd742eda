//! Argument and return types beyond the primitives: collections, tuples,
//! nested `Option`/`Result`, user types, `Self` (which the stub spells as the
//! type), and paths.

use std::collections::{BTreeMap, HashMap};

use rpc_core::expose;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Point {
    pub x: f64,
    pub y: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Shape {
    Circle { center: Point, radius: f64 },
    Polygon(Vec<Point>),
}

#[derive(Clone, Serialize, Deserialize)]
pub struct Snapshot {
    pub shapes: Vec<Shape>,
}

#[expose]
impl Snapshot {
    pub fn copy(&self) -> Self {
        self.clone()
    }

    pub fn replace(&self, other: Self) -> Option<Self> {
        Some(other)
    }

    pub fn area(&self, shapes: Vec<Shape>, scale: (f32, f32)) -> f64 {
        shapes.len() as f64 * f64::from(scale.0 * scale.1)
    }

    pub fn index(&self, by_name: HashMap<String, u32>) -> BTreeMap<u32, String> {
        by_name.into_iter().map(|(k, v)| (v, k)).collect()
    }

    pub fn nested(&self, v: Option<Result<Vec<u8>, String>>) -> Result<Option<[u8; 4]>, std::string::String> {
        let _ = v;
        Ok(None)
    }

    pub fn boxed(&self, b: Box<Point>) -> Box<[Shape]> {
        vec![Shape::Circle { center: *b, radius: 1.0 }].into_boxed_slice()
    }

    pub fn unit_arg(&self, u: ()) -> ((), bool, char) {
        (u, true, 'x')
    }
}

async fn client_calls(c: &SnapshotClient, s: Snapshot) -> Result<(), rpc_core::RpcError> {
    let _: Snapshot = c.copy().await?;
    let _: Option<Snapshot> = c.replace(s).await?;
    let _: f64 = c.area(vec![], (1.0, 2.0)).await?;
    let _: BTreeMap<u32, String> = c.index(HashMap::new()).await?;
    let _: Result<Option<[u8; 4]>, String> = c.nested(None).await?;
    let _: Box<[Shape]> = c.boxed(Box::new(Point { x: 0.0, y: 0.0 })).await?;
    let _: ((), bool, char) = c.unit_arg(()).await?;
    Ok(())
}

fn main() {
    let _ = client_calls;
}
