"""Tumour sub-type classification from a pre-trained segmentation encoder (the SuPreM paper's Fig 3).

  data.py        case_labels.csv (case, subtype) reader / validator, images of the labelled cases
  encoder.py     deepest encoder features of every registered backbone; encoder weights loading
  model.py       encoder + pooled linear head; classifier checkpoint
  preprocess.py  the pre-trained model's geometry, the classification window, the ROI mask and patch
  train.py       training loop (budget, seeds, few-shot as suprem_finetune) and prediction -> scores.csv
  route.py       the segmentation-derived route: scores from predicted probabilities
  hand_features.py  baseline: ROI intensity percentiles + sd, logistic regression (scikit-learn)
  evaluate.py    one-vs-rest ROC / AUC with DeLong CI, operating points, confusion matrix, ROC figure

Sits above training and inference; nothing below imports it.
"""
