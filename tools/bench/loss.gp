# loss.gp -- loss vs offered rate per backend (tools/bench/report.py runs it).
#   gnuplot -e "amqp='loss-amqp.dat'; file='loss-file.dat'; out='BENCHMARKS.png'" loss.gp
# Each data file holds one block per backend: a quoted title line, then
# "offered_kstatements_per_s loss_percent" rows, blocks separated by two blank lines.
set terminal pngcairo size 1400,560 font "DejaVu Sans,10"
set output out
set multiplot layout 1,2 title "mrte-collector: statements lost vs offered rate (200-byte COM_QUERY per frame)"
set grid
set key top left box opaque
set xlabel "offered statements/s (thousands)"
set ylabel "lost (% of sent)"
set yrange [-2:*]
set xrange [0:*]
set style data linespoints
set key autotitle columnheader
stats amqp nooutput
n_amqp = STATS_blocks
stats file nooutput
n_file = STATS_blocks
set title "agent -> RabbitMQ -> consumer"
plot for [i=0:n_amqp-1] amqp index i using 1:2 pointsize 1.2 linewidth 2
set title "agent -> --sink=file -> consumer (broker out); tcpdump -w /dev/null"
plot for [i=0:n_file-1] file index i using 1:2 pointsize 1.2 linewidth 2
unset multiplot
