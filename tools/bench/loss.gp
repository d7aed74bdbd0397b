# loss.gp -- loss vs offered rate per backend (tools/bench/report.py runs it).
#   gnuplot -e "amqp='loss-amqp.dat'; file='loss-file.dat'; out='BENCHMARKS.png'" loss.gp
# Each data file holds one block per backend: a quoted title line, then
# "offered_k loss_percent target_k" rows (target 0 = flat out), blocks separated by two blank lines.
set terminal pngcairo size 1400,1000 font "DejaVu Sans,10" noenhanced
set output out
set multiplot layout 2,2 title "mrte-collector: statements lost vs offered rate (200-byte COM_QUERY per frame)"
set grid
set key top left box opaque
set xlabel "offered statements/s (thousands)"
set ylabel "lost (% of sent)"
set yrange [-0.5:2<*]
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
# Below: what the generator managed to offer vs what it was asked for.  A
# curve that bends away from the diagonal means the 2 CPUs were saturated
# (the veth receive path, capture hooks included, runs in the sender's context).
set xlabel "target statements/s (thousands)"
set ylabel "offered statements/s (thousands)"
set yrange [0:*]
set key top left box opaque
set title "offered vs target: agent -> RabbitMQ"
plot for [i=0:n_amqp-1] amqp index i using ($3 > 0 ? $3 : 1/0):1 pointsize 1.2 linewidth 2, \
     x title "target" with lines dashtype 2 linecolor rgb "gray"
set title "offered vs target: --sink=file; tcpdump"
plot for [i=0:n_file-1] file index i using ($3 > 0 ? $3 : 1/0):1 pointsize 1.2 linewidth 2, \
     x title "target" with lines dashtype 2 linecolor rgb "gray"
unset multiplot
