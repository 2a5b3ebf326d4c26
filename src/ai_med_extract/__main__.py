from ai_med_extract.cli import main

if __name__ == "__main__":  # spawned worker processes import this module too: they must not run the CLI
    main()
