"""probsft.continuum: the real-model research programme on the capability continuum.

Built on the fine-tuning library (probsft.validate), never imported by it:

    grids        the registry of measured grids: one entry per backbone's grid (model, tasks, seeds,
                 noise kinds, results folder, the rules registered before it ran), looked up by key
    experiment   the dial grid: position x supervision x optimizer x objective x seed fine-tunes
    analysis     paired cells, verdicts, crossover, fit-follows-winner, alpha trend, adaptive objectives
    predictions  the theory's predicted sign per region and supervision, and the verdict rule
    features     base-model statistics of each position (a second probe coordinate)
    rule         the recommendation rules, their kernel smoothing and leave-one-position-out scoring
    curve        the measured-curve summary that `probsft recommend` reads (built once, versioned)
    position     does the probe's position pick better than a position-blind policy on a curve?
    recommend    probe + first-order theory + measured curve -> an objective for a (model, data) pair
    recommend_text  the recommendation as text: why lines, table, a small plot of the curve
    rule_variants  rules tried on the pooled grids and not adopted
"""
