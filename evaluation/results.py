"""What an evaluation reports: each list's metrics in the log, and the final scoring of every list
with the best model into results.json (at the end of a training run, and in mode=evaluate)."""

from evaluation.evaluate import EmbeddingRecipe, evaluate, fit_calibration, training_cohort
from evaluation.qmf import describe
from utils import distributed
from utils.telemetry import summary_text


def log_evaluation(logger, results, epoch, prefix='eval'):
    """Each list's metrics as <prefix>/<list>/<metric> (eval: an epoch's model; final: the best model)."""
    for name, result in results.items():
        log_list(logger, name, result, epoch, prefix)
        if 'asnorm' in result:
            norm = result['asnorm']
            log_list(
                logger,
                f'{name}/asnorm',
                dict(norm, trials=result['trials']),
                epoch,
                prefix,
                f' with AS-norm (top {norm["top_k"]} of {norm["cohort"]} cohort speakers)',
            )
        if 'qmf' in result:
            calibrated = result['qmf']
            log_list(logger, f'{name}/qmf', dict(calibrated, trials=result['trials']), epoch, prefix, ' with QMF')
            if 'cllr' in calibrated:
                logger.log_text(
                    f'epoch {epoch} {name} with QMF: actual DCF(0.05) {calibrated["act_dcf_0.05"]:.4f}, '
                    f'actual DCF(0.01) {calibrated["act_dcf_0.01"]:.4f}, Cllr {calibrated["cllr"]:.4f} bits'
                )


def log_list(logger, name, result, epoch, prefix, how=''):
    if result.get('nonfinite'):
        logger.log_text(
            f'epoch {epoch} {name}: {result["nonfinite"]} of {result["trials"]} scores are not '
            f'finite: not scored, the epoch does not count as an improvement'
        )
        return
    for metric in ('eer', 'min_dcf_0.05', 'min_dcf_0.01'):
        logger.log_metric(f'{prefix}/{name}/{metric}', result[metric], epoch)
    logger.log_text(
        f'epoch {epoch} {name}{how}: EER {result["eer"]:.3f} %, minDCF(0.05) '
        f'{result["min_dcf_0.05"]:.4f}, minDCF(0.01) {result["min_dcf_0.01"]:.4f} '
        f'({result["trials"]} trials)'
    )


def final_evaluation(
    model, trial_lists, args, device, logger, best_epoch, params, telemetry, manifest=None, kept=None, calibration=None
):
    """Scores every trial list with the best model (and with AS-norm against the training speakers
    when asnorm_top_k is set; calibrated by QMF fitted on training speakers when qmf is set) and
    writes results.json, the run's performance (telemetry) in it; kept: {list: its results} scored
    already with the same weights (the best epoch's validation list); calibration: a QMF fitted
    before (a checkpoint's), applied instead of fitting one. Returns (the summary, the QMF
    calibration that scored the lists (rank 0; None without QMF and on the other ranks))."""
    summary, calibration = score_lists(
        model, trial_lists, args, device, logger, best_epoch, telemetry, manifest, kept, calibration=calibration
    )
    summary['best_epoch'] = best_epoch
    summary['method'] = args['method']
    summary['params'] = params
    if calibration is not None:
        summary['qmf'] = describe(calibration)
        logger.log_text(f'QMF calibration: {summary["qmf"]}')
    summary['performance'] = telemetry.summary()
    if summary['performance'] is not None:
        logger.log_text(summary_text(summary['performance']))
    logger.save_results(summary)
    return summary, calibration


def lmft_evaluation(model, trial_lists, args, device, logger, epoch, summary, telemetry, manifest=None, kept=None):
    """Scores every trial list with large-margin fine-tuning's model (its epoch `epoch`) as
    final_evaluation does (its own QMF calibration fitted when qmf is set), into summary['lmft']
    ({list: results, 'best_epoch', 'qmf'}), its metrics as lmft/final/..., its scores as
    <list>-lmft; writes results.json again (the performance updated). Returns (summary, the LMFT
    model's calibration or None)."""
    section, calibration = score_lists(model, trial_lists, args, device, logger, epoch, telemetry, manifest, kept, True)
    summary['lmft'] = {**section, 'best_epoch': epoch}
    if calibration is not None:
        summary['lmft']['qmf'] = describe(calibration)
    summary['performance'] = telemetry.summary()
    logger.save_results(summary)
    return summary, calibration


def score_lists(
    model, trial_lists, args, device, logger, epoch, telemetry, manifest=None, kept=None, lmft=False, calibration=None
):
    """({list: results} of every list scored with the model (kept's as they are), logged and its
    scores saved; the QMF calibration used: the one given, else one fitted when qmf is set)."""
    show = distributed.is_main()
    recipe = EmbeddingRecipe.of(args)
    cohort = None
    with telemetry.timed_evaluation():
        if (args['asnorm_top_k'] or (args['qmf'] and calibration is None)) and trial_lists:
            logger.log_text(
                f'AS-norm / QMF cohort: {len(manifest.speakers)} training speakers, '
                f'{args["asnorm_cohort_utts"]} utterances each'
            )
            cohort = training_cohort(model, manifest, recipe, device, args['seed'], args['asnorm_cohort_utts'], show)
        if args['qmf'] and calibration is None and trial_lists:
            logger.log_text(f'QMF: fitting the calibration on {args["qmf_trials"]} trials of training speakers')
            calibration = fit_calibration(model, manifest, cohort, args, device, show)
        norm_cohort = cohort if args['asnorm_top_k'] else None
        top_k = args['asnorm_top_k']
        results = evaluate(model, trial_lists, args['path_test'], recipe, device, show, norm_cohort, top_k, calibration)
    log_evaluation(logger, results, epoch, prefix='lmft/final' if lmft else 'final')
    suffix = '-lmft' if lmft else ''
    scored = dict(kept or {})
    for name, result in results.items():
        trials = trial_lists[name]
        logger.save_scores(name + suffix, trials.enroll, trials.test, trials.labels, result.pop('scores'))
        for kind in ('asnorm', 'qmf'):
            if f'{kind}_scores' in result:
                scores = result.pop(f'{kind}_scores')
                logger.save_scores(f'{name}-{kind}{suffix}', trials.enroll, trials.test, trials.labels, scores)
        scored[name] = result
    return scored, calibration
