//! ONNX conformance: every case in test/fixtures/onnx (see its README). Inputs X,
//! scale, bias, mean, var; attributes epsilon (default 1e-5), momentum (default 0.9, ONNX
//! convention), training_mode (default 0; `is_test` means inference). Training cases
//! check y and the updated running statistics (output_mean, output_var). Tolerance 1e-5
//! absolute + 1e-4 relative, as the README specifies.

// `!(a <= b)` on purpose: it also rejects NaN.
#![allow(clippy::neg_cmp_op_on_partial_ord)]

use batchnorm_core::{eval_forward, train_forward, Affine, Convention, Dims, Layout, Running};
use serde_json::Value;
use std::path::{Path, PathBuf};

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../test/fixtures/onnx");
const ATOL: f64 = 1e-5;
const RTOL: f64 = 1e-4;

struct Tensor {
    dims: Vec<usize>,
    data: Vec<f32>,
}

fn tensor(doc: &Value, name: &str, file: &Path) -> Tensor {
    let t = &doc["tensors"][name];
    assert!(t.is_object(), "{}: tensor {name:?} missing", file.display());
    let dims: Vec<usize> =
        t["dims"].as_array().expect("dims").iter().map(|d| d.as_u64().expect("dim") as usize).collect();
    let data: Vec<f32> =
        t["data"].as_array().expect("data").iter().map(|v| v.as_f64().expect("number") as f32).collect();
    assert_eq!(dims.iter().product::<usize>(), data.len(), "{}: tensor {name:?} dims vs data", file.display());
    Tensor { dims, data }
}

fn attr(node: &Value, name: &str) -> Option<f64> {
    node["attrs"].get(name).map(|v| v.as_f64().unwrap_or_else(|| panic!("attr {name} not a number: {v}")))
}

fn check(file: &Path, what: &str, got: &[f32], want: &[f32]) -> Result<(), String> {
    if got.len() != want.len() {
        return Err(format!("{}: {what}: length {} vs {}", file.display(), got.len(), want.len()));
    }
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let (g, w) = (g as f64, w as f64);
        if !((g - w).abs() <= ATOL + RTOL * w.abs()) {
            return Err(format!("{}: {what}[{i}]: got {g}, expected {w}", file.display()));
        }
    }
    Ok(())
}

/// Runs one case; returns whether it was a training case.
fn run_case(file: &Path) -> Result<bool, String> {
    let text = std::fs::read_to_string(file).map_err(|e| format!("{}: {e}", file.display()))?;
    let doc: Value = serde_json::from_str(&text).map_err(|e| format!("{}: {e}", file.display()))?;
    let nodes = doc["nodes"].as_array().ok_or("no nodes")?;
    assert_eq!(nodes.len(), 1, "{}: one node expected", file.display());
    let node = &nodes[0];
    assert_eq!(node["op"], "BatchNormalization", "{}", file.display());
    let names = |k: &str| -> Vec<String> {
        node[k].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_string()).collect()
    };
    let (inputs, outputs) = (names("inputs"), names("outputs"));
    assert_eq!(inputs.len(), 5, "{}: inputs", file.display());

    let x = tensor(&doc, &inputs[0], file);
    let scale = tensor(&doc, &inputs[1], file);
    let bias = tensor(&doc, &inputs[2], file);
    let mean = tensor(&doc, &inputs[3], file);
    let var = tensor(&doc, &inputs[4], file);
    let eps = attr(node, "epsilon").unwrap_or(1e-5) as f32;
    let momentum = attr(node, "momentum").unwrap_or(0.9) as f32;
    let training = attr(node, "training_mode").unwrap_or(0.0) != 0.0 && attr(node, "is_test").unwrap_or(0.0) == 0.0;

    let dims = Dims::new(&x.dims, Layout::ChannelsFirst).map_err(|e| format!("{}: {e}", file.display()))?;
    for t in [&scale, &bias, &mean, &var] {
        assert_eq!(t.dims, vec![dims.channels], "{}: per-channel input shape", file.display());
    }
    let affine = Affine { weight: Some(&scale.data), bias: Some(&bias.data) };
    let mut y = vec![f32::NAN; x.data.len()];
    let want_y = tensor(&doc, &outputs[0], file);
    assert_eq!(want_y.dims, x.dims);

    if training {
        let (mut rm, mut rv) = (mean.data.clone(), var.data.clone());
        let (mut sm, mut si) = (vec![0f32; dims.channels], vec![0f32; dims.channels]);
        let run = Running { mean: &mut rm, var: &mut rv, momentum, convention: Convention::Onnx };
        train_forward(&x.data, &mut y, dims, affine, Some(run), eps, &mut sm, &mut si)
            .map_err(|e| format!("{}: {e}", file.display()))?;
        check(file, "y", &y, &want_y.data)?;
        assert!(outputs.len() == 3, "{}: a training case should list output_mean and output_var", file.display());
        check(file, "output_mean", &rm, &tensor(&doc, &outputs[1], file).data)?;
        check(file, "output_var", &rv, &tensor(&doc, &outputs[2], file).data)?;
    } else {
        eval_forward(&x.data, &mut y, dims, affine, &mean.data, &var.data, eps)
            .map_err(|e| format!("{}: {e}", file.display()))?;
        check(file, "y", &y, &want_y.data)?;
    }
    Ok(training)
}

#[test]
fn onnx_conformance() {
    let dir = PathBuf::from(DIR);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("conformance directory {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no conformance cases in {}", dir.display());

    let mut failures = Vec::new();
    let (mut train, mut eval) = (0, 0);
    for f in &files {
        match run_case(f) {
            Ok(true) => train += 1,
            Ok(false) => eval += 1,
            Err(e) => failures.push(e),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} conformance cases failed:\n{}",
        failures.len(),
        files.len(),
        failures.join("\n")
    );
    assert_eq!(train + eval, files.len());
    // The set contains both kinds; if it ever did not, this suite would silently test less.
    assert!(train > 0 && eval > 0, "training cases {train}, inference cases {eval}");
    println!("{} conformance cases passed ({train} training, {eval} inference)", files.len());
}
