"""From a trained model or its codes to numbers: `scoring` (evaluate: encode, then every estimator and metric on the
mean and sampled codes), `codes_analysis` and `codes_file` (the same without an encoder), `tc_report` (the one TC
report with intervals and the active/passive split), `seeds` (aggregation over seeds), `claims` (RESULTS.md from
the zoo) and `sweep_results`."""
