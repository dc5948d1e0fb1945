"""``iac predict | export | evaluate-folder``: argument handling over :mod:`iac_tf.inference.api`
and :mod:`iac_tf.evaluation.volumetric` (the parsers are in :mod:`iac_tf.cli`)."""

from __future__ import annotations

import pathlib
import time


def run_inference_command(args) -> int:
    if args.command == "predict":
        from iac_tf.inference.api import predict
        from iac_tf.inference.predict import format_summary

        summary = predict(args.model, args.inputs, args.output, stage=args.stage,
                          method=args.method, config=args.config, modality=args.modality,
                          save_probabilities=args.save_probabilities, batch_size=args.batch_size)
        print(format_summary(summary))
        print(f"labels written to {pathlib.Path(args.output)}")
    elif args.command == "export":
        from iac_tf.inference.api import export

        check = export(args.model, args.out, stage=args.stage, method=args.method,
                       config=args.config)
        print(f"exported {pathlib.Path(args.out) / '1'} (signature serving_default: image -> "
              f"probabilities, labels); reloaded with tf.saved_model.load: max |difference| to "
              f"the Keras model {check['max_abs_difference']:.2e}, labels equal; "
              f"preprocessing the caller must apply: "
              f"{pathlib.Path(args.out) / 'preprocessing.json'}")
    else:
        from iac_tf.evaluation.volumetric import evaluate_folder, format_summary

        t0 = time.perf_counter()
        summary = evaluate_folder(args.pred_dir, args.gt_dir, args.dataset_json, args.out)
        out = pathlib.Path(args.out or args.pred_dir)
        print(format_summary(summary))
        print(f"{out / 'volumetric_per_case.csv'}, {out / 'volumetric_summary.json'} "
              f"({time.perf_counter() - t0:.1f} s)")
    return 0
