from ai_med_extract.cli import main

main()
