from eventfold.examples.courses.app import main

main()
