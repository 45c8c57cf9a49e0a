process SPATIALDOMAINS_SIMULATE {
    tag "${meta.id}"
    label 'process_low'

    input:
    val meta

    output:
    path "simulated_input"                 , emit: dir           // slices, images, sheet, gene sets
    path "simulated_input/samplesheet.csv" , emit: samplesheet
    path "versions.yml"                    , emit: versions

    when:
    task.ext.when == null || task.ext.when

    script:
    def args = task.ext.args ?: ''
    """
    export HOME="\$PWD" XDG_CACHE_HOME="\$PWD/.cache" MPLCONFIGDIR="\$PWD/.cache/matplotlib" NUMBA_CACHE_DIR="\$PWD/.cache/numba"
    export OMP_NUM_THREADS=${task.cpus} OPENBLAS_NUM_THREADS=${task.cpus} MKL_NUM_THREADS=${task.cpus}

    spatialdomains simulate --group ${meta.id} --out simulated_input ${args}

    cat <<-END_VERSIONS > versions.yml
    "${task.process}":
        spatialdomains: \$(spatialdomains --version)
        python: \$(python3 --version | sed 's/Python //')
    END_VERSIONS
    """

    stub:
    """
    mkdir -p simulated_input
    touch simulated_input/slice1.h5ad simulated_input/slice2.h5ad
    printf 'sample,group,data,platform,truth\\nslice1,${meta.id},slice1.h5ad,visium,truth\\nslice2,${meta.id},slice2.h5ad,visium,truth\\n' > simulated_input/samplesheet.csv

    cat <<-END_VERSIONS > versions.yml
    "${task.process}":
        spatialdomains: \$(spatialdomains --version)
        python: \$(python3 --version | sed 's/Python //')
    END_VERSIONS
    """
}
