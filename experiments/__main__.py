from experiments.entry import main

main()
