"""The ms-swift ``--external_plugins`` file: registers ``--loss_type probsft`` for $PROBSFT_SPEC.

Run as a module it prints its own path, for the command line:

    PROBSFT_SPEC=-p swift sft --external_plugins $(python -m probsft.integrations.swift_plugin) \\
        --loss_type probsft ...
"""

if __name__ == "__main__":
    print(__file__)
else:
    from probsft.integrations.swift_loss import register_from_env

    register_from_env()
