from probsft.cli import main

if __name__ == "__main__":          # a spawned worker (multiprocessing) re-imports this module
    raise SystemExit(main())
