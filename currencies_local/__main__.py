from currencies_local.cli import main

main()
