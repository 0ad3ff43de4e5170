from sloscale.cli import main

main()
