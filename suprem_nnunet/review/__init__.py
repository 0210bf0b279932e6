"""The annotation flywheel: score predictions, rank what to review, import the revisions.

Sits above inference and evaluation; nothing below imports it.

* `probabilities` reads `suprem_predict --save-probabilities` files of one or more models (or
  test-time-augmented passes, `tta`), matches classes by name and puts every pass on one grid;
* `scorers` are independent: each computes its own per-(case, class) values from the passes;
* `importance` is the one documented combination of the scorers' components;
* `queue` ranks stored scores (it knows no scorer);
* `attention` writes the voxel attention map (NIfTI on the CT's grid) and a preview PNG;
* `revisions` imports revised labels into a raw dataset, versioned, with a report;
* `benchmark` is the evidence: does the score find where the AI is wrong?
"""
